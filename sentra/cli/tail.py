"""`sentra tail AGENT`: follow an agent's SSE stream in the terminal until it finishes."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from typing import Any, TextIO

from sentra.cli.common import add_connection_options, client_from_args, command_error, guarded
from sentra.client import Client, SentraError, level_name, reason_text

READ_TIMEOUT = 60.0  # the server sends a heartbeat every 15 s by default; silence this long means a dead link
BACKOFF_START = 0.25
BACKOFF_CAP = 2.0
RESET = "\033[0m"
LEVEL_COLOURS = {
    "DEBUG": "\033[2m",
    "INFO": "\033[32m",
    "WARNING": "\033[33m",
    "ERROR": "\033[31m",
    "CRITICAL": "\033[1;31m",
}


def register(commands: Any) -> None:
    """Add `sentra tail`."""
    parser = commands.add_parser(
        "tail",
        help="follow an agent's log live",
        description=(
            "Print an agent's lines as they arrive (time, level, source, message), reconnecting without gaps "
            "when the connection drops. An agent that does not exist yet is waited for, so tail can start before "
            "the run does. Exits 0 when the agent completes and 1 when it fails."
        ),
    )
    parser.add_argument("agent", metavar="AGENT", help="the agent id")
    parser.add_argument("--level", help="show only lines at this level or above (DEBUG … CRITICAL)")
    parser.add_argument("-q", dest="q", metavar="WORD", help="show only lines containing WORD (case-insensitive)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--after", type=int, metavar="SEQ", help="start after line number SEQ")
    start.add_argument("--tail", type=int, metavar="N", help="start with the last N lines (default: all)")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="fail at once (exit 2) if the agent does not exist yet, instead of waiting for it",
    )
    add_connection_options(parser)
    parser.set_defaults(func=guarded(cmd_tail))


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the stream; the exit code says how the agent finished."""
    client = client_from_args(args)
    query: dict[str, Any] = {}
    if args.level:
        try:
            query["level"] = level_name(args.level)
        except ValueError as exc:
            raise command_error(str(exc)) from None
    if args.q:
        query["q"] = args.q
    if args.wait:
        query["wait"] = 1
    if args.tail is not None:
        query["tail"] = args.tail
    elif args.after is not None:
        query["after"] = args.after
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    follower = Follower(client, args.agent, query, LinePrinter(sys.stdout, colour=colour))
    try:
        return follower.run()
    except BrokenPipeError:
        # `sentra tail … | head`: the reader has gone; leave quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


class LinePrinter:
    """Writes lines as `HH:MM:SS.mmm LEVEL    source message`, the level coloured on a terminal."""

    def __init__(self, out: TextIO, *, colour: bool) -> None:
        self.out = out
        self.colour = colour

    def show(self, line: dict[str, Any]) -> None:
        """Print one line as the API gives it."""
        ts = float(line.get("ts") or 0.0)
        stamp = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"
        level = str(line.get("level") or "INFO")
        tag = f"{level:<8}"
        if self.colour:
            tag = LEVEL_COLOURS.get(level, "") + tag + RESET
        source = str(line.get("source") or "")
        prefix = f"{stamp} {tag} {source} " if source else f"{stamp} {tag} "
        self.out.write(prefix + str(line.get("message", "")) + "\n")

    def flush(self) -> None:
        """Make what was printed visible now."""
        self.out.flush()


class Follower:
    """One `sentra tail`: connect, print events, reconnect from the last event id until the agent finishes."""

    def __init__(self, client: Client, agent_id: str, query: dict[str, Any], printer: LinePrinter) -> None:
        self.client = client
        self.agent_id = agent_id
        self.query = query
        self.printer = printer
        self.last_id: str | None = None
        self.retry = BACKOFF_START

    def run(self) -> int:
        """Follow until the final event (or a 204 on reconnect); returns 0 completed, 1 failed."""
        connected_before = False
        delay = self.retry
        lost = False
        while True:
            conn = self.client.connect(timeout=READ_TIMEOUT)
            try:
                try:
                    response = self._open(conn)
                except (OSError, http.client.HTTPException) as exc:
                    if not connected_before:
                        raise SentraError(f"cannot reach Sentra at {self.client.url}: {reason_text(exc)}") from None
                    response = None
                    reason = reason_text(exc)
                if response is not None and response.status == 204:
                    return self._exit_code_from_status()
                if response is not None and response.status == 200:
                    if lost:
                        print("sentra: reconnected", file=sys.stderr)
                    connected_before, lost, delay = True, False, self.retry
                    outcome = self._read_events(response)
                    if outcome is not None:
                        return outcome
                    reason = "the connection was closed"
                elif response is not None:
                    data = response.read()
                    if response.status not in (408, 429) and response.status < 500:
                        raise SentraError.from_response(response.status, data, f"agent {self.agent_id}")
                    reason = f"HTTP {response.status}"
            finally:
                conn.close()
            if not lost:
                print(f"sentra: {reason}; reconnecting", file=sys.stderr)
                lost = True
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)

    def _open(self, conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        path = self.client.path(f"/api/agents/{self.agent_id}/logs/stream", self.query)
        conn.request("GET", path, headers=self.client.headers(headers))
        return conn.getresponse()

    def _read_events(self, response: http.client.HTTPResponse) -> int | None:
        """Parse SSE fields until the stream ends; an exit code once the agent has finished, else None."""
        data: list[str] = []
        pending_id = self.last_id
        while True:
            try:
                raw = response.readline()
            except (OSError, http.client.HTTPException):
                return None
            if not raw:
                return None
            line = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
            if line == "":
                self.last_id = pending_id
                if data:
                    outcome = self._dispatch("\n".join(data))
                    data = []
                    if outcome is not None:
                        return outcome
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                pending_id = value
            elif name == "retry" and value.isdigit():
                self.retry = min(int(value) / 1000.0, BACKOFF_CAP)

    def _dispatch(self, data: str) -> int | None:
        try:
            event = json.loads(data)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        if event.get("skipped"):
            print(f"sentra: {event['skipped']} older lines were removed by retention", file=sys.stderr)
        for line in event.get("lines") or []:
            if isinstance(line, dict):
                self.printer.show(line)
        self.printer.flush()
        final = event.get("final")
        if final is False and event.get("reason") == "not_owner":
            raise command_error(f"agent {self.agent_id} was created by another user")
        if final is False and event.get("reason") in ("token_expired", "token_revoked"):
            raise command_error(f"the stream ended: {str(event['reason']).replace('_', ' ')}")
        if final is True:
            if event.get("reason") == "deleted":
                print(f"sentra: agent {self.agent_id} was deleted", file=sys.stderr)
                return 1
            return self._finished(str(event.get("status")), event.get("reason"))
        return None

    def _exit_code_from_status(self) -> int:
        agent = self.client.request("GET", f"/api/agents/{self.agent_id}")
        return self._finished(str(agent.get("status")), agent.get("reason"))

    def _finished(self, status: str, reason: Any) -> int:
        detail = f": {reason}" if reason else ""
        print(f"sentra: agent {self.agent_id} {status}{detail}", file=sys.stderr)
        return 0 if status == "completed" else 1
