"""The client splits and batches lines by the limits the server advertises at /healthz: a server configured with
a smaller limits.max_line_size than the default takes every piece of a long message, however early it was logged;
a server without limits at /healthz (an older Sentra, or none answering in time) leaves the 256 KiB default."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import messages, server_size
from processes import ServerProcess

from sentra.client import LIMITS_TIMEOUT, MAX_LINE_SIZE, Client

pytestmark = pytest.mark.slow  # server and script children

SMALL_LINE = 8 * 1024


def long_message() -> str:
    """About 100 KB whose cuts at 8 KiB fall inside 2-, 3- and 4-byte characters."""
    message = "".join(f"{n:06d} é€😀\n" for n in range(6000))
    assert 100_000 <= len(message.encode()) <= 110_000
    return message


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server child that takes lines of at most 8 KiB."""
    server = ServerProcess.in_folder(tmp_path_factory.mktemp("client-limits"), limits={"max_line_size": "8KiB"})
    server.start()
    yield server
    server.terminate()


def handler_script(server: ServerProcess, agent_id: str, body: str) -> Path:
    """A script that adds SentraHandler to the root logger in the README's two lines, then runs `body` with
    `message` (long_message()) and `handler` defined."""
    text_file = server.directory / f"{agent_id}.txt"
    text_file.write_text(long_message(), encoding="utf-8")
    script = server.directory / f"{agent_id}.py"
    head = "import logging\nfrom sentra.client import SentraHandler\n"
    head += f"logging.getLogger().addHandler(SentraHandler(agent_id={agent_id!r}))\n"
    head += f"message = open({str(text_file)!r}, encoding='utf-8').read()\n"
    head += "handler = logging.getLogger().handlers[0]\n"
    script.write_text(head + textwrap.dedent(body))
    return script


def pieces_of(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Stored lines grouped by the message they are pieces of (same ts, level and source, consecutive)."""
    groups: list[list[dict[str, Any]]] = []
    for line in lines:
        key = (line["ts"], line["level"], line["source"])
        if groups and (groups[-1][0]["ts"], groups[-1][0]["level"], groups[-1][0]["source"]) == key:
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups


def test_a_100_kb_message_through_the_two_line_handler_reads_back_whole_under_a_smaller_server_limit(
    small: ServerProcess,
) -> None:
    # The first record starts the client: it was split by the default before /healthz was read, and is split
    # again when sent. The second is logged once the limit is known.
    body = """
    logging.warning(message)
    handler.flush()
    logging.warning(message)
    print(handler.client.max_line_size, handler.agent.rejected)
    """
    script = handler_script(small, "small-handler", body)
    result = subprocess.run(
        [sys.executable, str(script)], env=small.agent_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing refused, nothing undelivered
    assert result.stdout == f"{SMALL_LINE} 0\n"
    lines = small.history("small-handler")
    early, late = pieces_of(lines)
    for pieces in (early, late):
        assert "".join(messages(pieces)) == long_message()
        assert len(pieces) >= 13
        assert max(server_size(piece) for piece in pieces) <= SMALL_LINE
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert small.get("/api/agents/small-handler")["status"] == "completed"


def test_a_message_logged_while_the_server_is_still_down_is_split_by_its_limit_once_it_is_up(
    tmp_path: Path,
) -> None:
    server = ServerProcess.in_folder(tmp_path, limits={"max_line_size": "8KiB"})
    body = """
    logging.warning(message)
    print("logged", flush=True)
    handler.flush()
    print(handler.client.max_line_size, handler.agent.rejected, flush=True)
    """
    script = handler_script(server, "late-server", body)
    child = subprocess.Popen(
        [sys.executable, str(script)], env=server.agent_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "logged\n"
        server.start()
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert err == ""
        assert out == f"{SMALL_LINE} 0\n"
        (pieces,) = pieces_of(server.history("late-server"))
        assert "".join(messages(pieces)) == long_message()
        assert max(server_size(piece) for piece in pieces) <= SMALL_LINE
    finally:
        child.kill()
        child.wait(10)
        server.terminate()


def test_an_explicit_max_line_size_wins_over_the_advertised_one(small: ServerProcess) -> None:
    client = Client(small.url, small.token(), max_line_size=4096)
    agent = client.agent("explicit-size")
    agent.info("first")
    assert agent.flush(30)  # sent after the server's limits were read
    assert client.server_limits is not None and client.server_limits["max_line_size"] == SMALL_LINE
    agent.warning(long_message())
    assert agent.flush(30)
    agent.close()
    first, pieces = pieces_of(small.history("explicit-size"))
    assert messages(first) == ["first"]
    assert "".join(messages(pieces)) == long_message()
    assert max(server_size(piece) for piece in pieces) <= 4096
    assert len(pieces) >= 25


class LimitlessServer:
    """A loopback HTTP server that takes lines as Sentra does but advertises no limits at /healthz: `health` is
    "404" (no such path), "old" (Sentra's answer before it had limits) or "silent" (limits, too late)."""

    def __init__(self, health: str) -> None:
        self.health = health
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> LimitlessServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append(("GET", self.path))
                if server.health == "404":
                    self._answer(404, {"error": {"code": "not_found", "message": "no such path"}})
                elif server.health == "old":
                    self._answer(200, {"status": "ok", "open_streams": 0})
                else:
                    time.sleep(LIMITS_TIMEOUT + 1)
                    self._answer(200, {"status": "ok", "open_streams": 0, "limits": {"max_line_size": SMALL_LINE}})

            def do_POST(self) -> None:
                server.requests.append(("POST", self.path))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/logs"):
                    server.bodies.append(body)
                    self._answer(200, {"accepted": body.count(b"\n")})
                else:
                    self._answer(201, {})

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting: what "silent" is for

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.mark.parametrize("health", ["404", "old", "silent"])
def test_a_server_without_limits_at_healthz_leaves_the_default(health: str) -> None:
    message = "".join(f"{n:07d} " for n in range(300_000 // 8))  # 300 KB: two lines by the 256 KiB default
    with LimitlessServer(health) as server:
        client = Client(server.url, "token")
        agent = client.agent("no-limits")
        agent.warning(message)
        assert agent.flush(30)
        agent.close()
    assert client.server_limits == {}
    assert client.max_line_size == MAX_LINE_SIZE
    assert server.requests[0] == ("GET", "/healthz")  # read once, before the first POST
    assert server.requests.count(("GET", "/healthz")) == 1
    sent = [json.loads(line) for body in server.bodies for line in body.splitlines()]
    assert "".join(line["message"] for line in sent) == message
    assert [len(line["message"]) for line in sent] == [MAX_LINE_SIZE, len(message) - MAX_LINE_SIZE]


@pytest.fixture(scope="module")
def batching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server child taking at most 50 lines and 64 KiB in one request, far below the client's own batches."""
    limits = {"max_lines_per_request": 50, "max_body_size": "64KiB"}
    server = ServerProcess.in_folder(tmp_path_factory.mktemp("client-batching"), limits=limits)
    server.start()
    yield server
    server.terminate()


def refusals(server: ServerProcess) -> str:
    """The /metrics lines counting refused ingest requests (loopback may read /metrics)."""
    text = httpx.get(server.url + "/metrics", timeout=10.0).text
    return "\n".join(line for line in text.splitlines() if line.startswith("sentra_ingest_rejected_total"))


@pytest.mark.parametrize(("agent_id", "size"), [("many-small", 40), ("fewer-large", 2000)])
def test_batches_stay_within_the_servers_lines_and_body_limits(
    batching: ServerProcess, agent_id: str, size: int
) -> None:
    agent = Client(batching.url, batching.token()).agent(agent_id)
    sent = [f"{n:05d} " + "x" * size for n in range(1000)]  # logged faster than one flush interval
    for text in sent:
        agent.info(text)
    assert agent.flush(60)
    agent.close()
    assert agent.rejected == 0
    assert messages(batching.history(agent_id)) == sent
    assert refusals(batching) == ""  # not one request above a limit: no 413 to split on
