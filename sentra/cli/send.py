"""`sentra send AGENT MESSAGE…` and `cmd | sentra send AGENT -`: log lines from the shell."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sentra.cli.common import add_connection_options, client_from_args, command_error, guarded
from sentra.client import SentraError, level_name

DELIVERY_TIMEOUT = 30.0


def register(commands: Any) -> None:
    """Add `sentra send`."""
    parser = commands.add_parser(
        "send",
        help="send a line, or stdin's lines, to an agent",
        description=(
            "Send MESSAGE as one line to AGENT (created if it does not exist), or with '-' send each line of "
            "stdin as it arrives, in batches. Exits non-zero if a line could not be delivered."
        ),
    )
    parser.add_argument("agent", metavar="AGENT", help="the agent id")
    parser.add_argument("message", nargs="+", metavar="MESSAGE", help="words of the line, or - to read stdin")
    parser.add_argument("--level", default="INFO", help="level of the line(s) (default INFO)")
    parser.add_argument("--source", default="", help="source of the line(s), e.g. a step or a tool name")
    add_connection_options(parser)
    parser.set_defaults(func=guarded(cmd_send))


def cmd_send(args: argparse.Namespace) -> int:
    """Send the line(s); fail in one line if the server refuses them or cannot be reached."""
    client = client_from_args(args)
    try:
        level = level_name(args.level)
    except ValueError as exc:
        raise command_error(str(exc)) from None
    # Create the agent in the foreground: a wrong URL or token is then one clear error, not lost lines.
    try:
        client.request("POST", "/api/agents", {"id": args.agent})
    except SentraError as exc:
        if exc.status != 409:
            raise
    try:
        agent = client.agent(args.agent, create=False)
    except ValueError as exc:
        raise command_error(str(exc)) from None
    if args.message == ["-"]:
        for raw in sys.stdin.buffer:
            agent.log(raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", "replace"), level, source=args.source)
    else:
        agent.log(" ".join(args.message), level, source=args.source)
    agent.close(DELIVERY_TIMEOUT)
    report = agent.undelivered_report()  # said here as the error, so not again at exit
    if report:
        raise command_error(report)
    return 0
