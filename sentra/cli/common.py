"""What the agent-side subcommands of `sentra` (run, tail, send, agents) share, and the error every command raises
to fail in one line. Like them, it imports only the vendorable client."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable

from sentra.client import Client, SentraError

Command = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure to report in one line, with a non-zero exit."""


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """--url and --token, shared by every command that talks to a server."""
    parser.add_argument("--url", help="Sentra server URL (default: $SENTRA_URL, else http://127.0.0.1:8765)")
    parser.add_argument("--token", help="bearer token (default: $SENTRA_TOKEN)")


def command_error(message: str) -> CliError:
    """The error main() prints as one `sentra: …` line with a non-zero exit."""
    return CliError(message)


def client_from_args(args: argparse.Namespace) -> Client:
    """A Client from --url/--token or the environment."""
    try:
        return Client(args.url, args.token)
    except ValueError as exc:
        raise command_error(str(exc)) from None


def explain(error: SentraError, args: argparse.Namespace) -> str:
    """The error's line, with a hint for the mistake people make most: no token, or the wrong one."""
    text = str(error)
    if error.status == 401:
        given = args.token or os.environ.get("SENTRA_TOKEN")
        text += "; check SENTRA_TOKEN or --token" if given else "; set SENTRA_TOKEN or pass --token"
    return text


def guarded(command: Command) -> Command:
    """Turn a SentraError escaping `command` into a one-line CLI error."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except SentraError as exc:
            raise command_error(explain(exc, args)) from None

    return run


def parse_labels(values: list[str] | None) -> dict[str, str]:
    """`--label key=value` options as a dict."""
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise command_error(f"--label must look like key=value, not {item!r}")
        labels[key] = value
    return labels
