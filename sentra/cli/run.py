"""`sentra run -- CMD ARGS…`: run a command, pass its output through, and stream every line to Sentra."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any, BinaryIO

from sentra.cli.common import add_connection_options, client_from_args, command_error, guarded, parse_labels
from sentra.client import Agent, level_name, utf8_cut

DRAIN_TIMEOUT = 3.0  # after the command exits, how long its pipes may stay open (a background child)
FLUSH_TIMEOUT = 30.0
FLUSH_TIMEOUT_UNREACHABLE = 2.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
PREFIX_WINDOW = 200  # characters at the start of a line where its level is looked for
# A stop asked for through Sentra: SIGINT (what Ctrl-C sends), then SIGTERM, then SIGKILL, each after the grace
# before it; with the client's poll of an idle agent (STOP_POLL, 1 s) the command ends within 5 s of the request.
STOP_SIGNALS = ((signal.SIGINT, 2.0), (signal.SIGTERM, 1.5), (signal.SIGKILL, None))
WAIT_STEP = 0.1  # how often the wait for the command looks for a stop request
STOPPED_EXIT_CODE = 130  # what sentra exits with when a stopped command still exits 0 (128 + SIGINT)


def register(commands: Any) -> None:
    """Add `sentra run`."""
    parser = commands.add_parser(
        "run",
        help="run a command and stream its output to Sentra",
        description=(
            "Run CMD, pass its stdout and stderr through unchanged, and stream every line to a Sentra agent "
            "(source stdout or stderr). A line's level is read from its prefix (ERROR, WARNING:, [error], "
            "a logging format, a Python traceback), else it is INFO. The agent is marked completed when CMD "
            "exits 0 and failed otherwise; sentra exits with CMD's exit code. If the server cannot be reached, "
            "CMD still runs. A stop asked for in Sentra (the viewer's Stop button, POST /api/agents/{id}/stop) "
            "sends CMD SIGINT, then SIGTERM and SIGKILL after 2 s and 1.5 s more, and fails the run with the "
            "reason 'stopped by USER'."
        ),
        usage="sentra run [--agent ID] [--name NAME] [--label KEY=VALUE] [--url URL] [--token TOKEN] -- CMD [ARGS ...]",
    )
    parser.add_argument("--agent", metavar="ID", help="agent id (default: $SENTRA_AGENT, else a new one)")
    parser.add_argument("--name", help="display name of the agent (default: the command line)")
    parser.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="label the agent (repeatable), e.g. --label team=ml"
    )
    add_connection_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    parser.set_defaults(func=guarded(cmd_run))


def cmd_run(args: argparse.Namespace) -> int:
    """Run the command with its output teed to Sentra; return its exit code."""
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise command_error("name the command to run: sentra run [options] -- CMD [ARGS ...]")
    client = client_from_args(args)
    labels = parse_labels(args.label)
    reporter = _report_client_problems()
    try:
        agent = client.agent(args.agent, name=args.name or shlex.join(command)[:512], labels=labels)
    except ValueError as exc:
        raise command_error(str(exc)) from None
    print(f"sentra: streaming to agent {agent.id} at {client.url} (follow: sentra tail {agent.id})", file=sys.stderr)
    stop = StopRequest()
    agent.on_stop = stop
    try:
        code, reason = _run_child(command, agent, stop)
        if stop.interrupted:
            code, reason = code or STOPPED_EXIT_CODE, f"stopped by {stop.by}"
        timeout = FLUSH_TIMEOUT if agent.reachable else FLUSH_TIMEOUT_UNREACHABLE
        # What could not be delivered is said in one line at exit, by the client.
        agent.end(reason=reason if code else "", timeout=timeout)
    finally:
        logging.getLogger("sentra.client").removeHandler(reporter)
    return code


class StopRequest:
    """A stop asked for through Sentra (the client calls it with who asked); the wait for the command watches it."""

    def __init__(self) -> None:
        self.by: str | None = None
        self.asked = threading.Event()
        self.interrupted = False  # the command was still running when the stop came, and was signalled

    def __call__(self, by: str) -> None:
        self.by = by or "another user"
        self.asked.set()


def _wait(child: subprocess.Popen[bytes], stop: StopRequest, agent: Agent) -> int:
    """The command's return code; once a stop is asked for, after SIGINT, SIGTERM and SIGKILL as needed."""
    while True:
        try:
            return child.wait(timeout=WAIT_STEP)
        except subprocess.TimeoutExpired:
            if stop.asked.is_set():
                break
    stop.interrupted = True
    note = f"stop requested by {stop.by}: interrupting the command"
    print(f"sentra: {note}", file=sys.stderr)
    agent.log(note, "WARNING", source="sentra")
    for signum, grace in STOP_SIGNALS:
        child.send_signal(signum)
        try:
            return child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return child.wait()


def _run_child(command: list[str], agent: Agent, stop: StopRequest) -> tuple[int, str]:
    """Run `command` to its end; its exit code (128+N for signal N) and the failure reason."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        reason = f"cannot run {command[0]}: {exc.strerror or exc}"
        agent.log(reason, "ERROR", source="sentra")
        print(f"sentra: {reason}", file=sys.stderr)
        return code, reason
    assert child.stdout is not None and child.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(child.stdout, sys.stdout.buffer, "stdout", agent), daemon=True),
        threading.Thread(target=_pump, args=(child.stderr, sys.stderr.buffer, "stderr", agent), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    previous = _forward_signals(child)
    try:
        returncode = _wait(child, stop, agent)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    for pump in pumps:
        pump.join(max(0.0, deadline - time.monotonic()))
    if not any(pump.is_alive() for pump in pumps):
        child.stdout.close()
        child.stderr.close()
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return 128 - returncode, f"killed by signal {name}"
    return returncode, f"exit code {returncode}"


def _forward_signals(child: subprocess.Popen[bytes]) -> dict[int, Any]:
    """Ignore Ctrl-C (the terminal sends it to the command too) and pass SIGTERM/SIGHUP on to the command."""

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous: dict[int, Any] = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for signum in FORWARDED_SIGNALS:
        previous[signum] = signal.signal(signum, forward)
    return previous


def _pump(pipe: BinaryIO, out: BinaryIO, source: str, agent: Agent) -> None:
    """Copy the command's bytes to our own stream as they come, and log each complete line at its level."""
    fd = pipe.fileno()
    passing_through = True
    partial = b""
    levels = LineLevels()
    piece_level = ""  # the level of a line sent in pieces so far, for its next pieces
    # A line longer than Sentra takes, without its newline yet, goes in pieces cut as the client cuts messages.
    limit = agent.client.max_line_size
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        if passing_through:
            try:
                out.write(chunk)
                out.flush()
            except (BrokenPipeError, ValueError):
                # Our reader went away (`sentra run … | head`): keep draining and logging the command.
                passing_through = False
        partial += chunk
        *lines, partial = partial.split(b"\n")
        for raw in lines:
            text = _text(raw)
            agent.log(text, piece_level or levels.level(text), source=source)
            piece_level = ""
        while len(partial) > limit:
            cut = utf8_cut(partial, limit)
            text = _text(partial[:cut])
            piece_level = piece_level or levels.level(text)
            agent.log(text, piece_level, source=source)
            partial = partial[cut:]
    if partial:
        text = _text(partial)
        agent.log(text, piece_level or levels.level(text), source=source)


_LEVEL_WORDS = "WARNING|WARN|ERROR|ERR|CRITICAL|FATAL|DEBUG|TRACE|INFO"  # longest first: WARNING before WARN
_STAMP = r"\[?(?:\d{4}-\d\d-\d\d[T ])?\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?"
# An optional time (and, after one, a logger name as in "%(asctime)s - %(name)s - %(levelname)s"), then the
# level: in capitals before a space, ':', '-', '|', ']' or the end ("ERROR", "ERROR:root:msg", "WARN x"),
# in any case in brackets ("[error]") or before a colon ("error: x", "Warning: x").
_LEVEL_PREFIX = re.compile(
    rf"\s*(?:{_STAMP}[\s\-|:]*(?:\w[\w.\-]*\s+[-|]\s+)?)?"
    rf"(?:\[(?P<bracketed>(?i:{_LEVEL_WORDS}))\]"
    rf"|(?P<word>{_LEVEL_WORDS})(?=[\s:\-|\]]|$)"
    rf"|(?P<colon>(?i:{_LEVEL_WORDS})):)"
)
_TRACEBACK_START = re.compile(r"\s*(?:\+ )?(?:Exception Group )?Traceback \(most recent call last\):\s*$")
_TRACEBACK_CHAINING = frozenset(
    (
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    )
)


class LineLevels:
    """The level of each line of one output stream, from the line's prefix or the Python traceback it is in.

    A line starting with a level (see _LEVEL_PREFIX) has that level (WARN is WARNING, FATAL is CRITICAL).
    A Python traceback is ERROR from "Traceback (most recent call last):" through its indented lines to the
    exception line ("ValueError: boom"), and so are the sentences that chain two tracebacks. Anything else
    is INFO, on stdout and on stderr alike.
    """

    def __init__(self) -> None:
        self._traceback = ""  # "plain" or "group" (indented throughout) while inside one

    def level(self, text: str) -> str:
        """The level of the next line of the stream."""
        if self._traceback:
            if text[:1] in (" ", "\t"):
                return "ERROR"
            ending, self._traceback = self._traceback, ""
            if ending == "plain":
                return "ERROR"  # the exception line closes the traceback
        if _TRACEBACK_START.match(text):
            self._traceback = "group" if text[:1] in (" ", "\t") else "plain"
            return "ERROR"
        if text in _TRACEBACK_CHAINING:
            return "ERROR"
        match = _LEVEL_PREFIX.match(text[:PREFIX_WINDOW])
        if match is None:
            return "INFO"
        return level_name(match.group("bracketed") or match.group("word") or match.group("colon"))


def _text(raw: bytes) -> str:
    return raw.removesuffix(b"\r").decode("utf-8", "replace")


def _report_client_problems() -> logging.Handler:
    """Print the client's warnings (server unreachable, line refused) on stderr as `sentra: …` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sentra: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("sentra.client")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler
