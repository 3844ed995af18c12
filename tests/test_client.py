"""The Python client against a real `python server.py` child: order, batching, retries across a restart,
the bounded buffer, refusals, the context manager, and use as one vendored file."""

from __future__ import annotations

import ast
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import messages
from processes import ROOT, ServerProcess

from sentra.client import Client

pytestmark = pytest.mark.slow  # server children


class AnswerSwallowingRelay:
    """A loopback TCP relay to the server that forwards the first ingest request, then swallows its answer
    and cuts the connection: the server has stored the batch, the client never hears so."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # so the accept loop notices close(): closing alone does not wake it
        self.port = int(self.listener.getsockname()[1])
        self._closed = threading.Event()
        self.swallowed = 0
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            doomed = threading.Event()
            for target in (self._to_server, self._to_client):
                thread = threading.Thread(target=target, args=(client, upstream, doomed), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _to_server(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if not self.swallowed and b"/logs HTTP/1.1" in data:
                    doomed.set()
                upstream.sendall(data)
        except OSError:
            pass

    def _to_client(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if doomed.is_set() and not self.swallowed:
                    self.swallowed += 1
                    client.shutdown(socket.SHUT_RDWR)
                    return
                client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        """Stop relaying and close every socket."""
        self._closed.set()
        self._threads[0].join(5)
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)


def test_burst_of_10000_lines_arrives_complete_and_in_order(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("burst")
    for number in range(10000):
        agent.info(f"line {number}", n=number)
    assert agent.flush(60)
    agent.close()
    lines = sentra.history("burst")
    assert messages(lines) == [f"line {number}" for number in range(10000)]
    assert [line["seq"] for line in lines] == list(range(1, 10001))
    assert [line["fields"]["n"] for line in lines] == list(range(10000))


@pytest.mark.parametrize("stop", ["terminate", "kill"], ids=["sigterm", "sigkill"])
def test_lines_logged_while_the_server_restarts_are_stored_once_each(tmp_path: Path, stop: str) -> None:
    server = ServerProcess.in_folder(tmp_path)
    server.start()
    try:
        agent = Client(server.url, server.token()).agent("restart")
        logged = 0
        done = threading.Event()

        def produce() -> None:
            nonlocal logged
            deadline = time.monotonic() + 20
            while not done.is_set() and time.monotonic() < deadline:
                agent.info(f"line {logged}")
                logged += 1
                time.sleep(0.001)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(0.7)
        getattr(server, stop)()
        down_from = logged
        time.sleep(2.0)
        down_to = logged
        server.start()
        time.sleep(0.7)
        done.set()
        producer.join(10)
        assert agent.flush(30)
        agent.close()
        assert down_to - down_from > 100, "the test must log while the server is down"
        assert messages(server.history("restart")) == [f"line {number}" for number in range(logged)]
        assert agent.dropped == 0
    finally:
        server.terminate()


def test_a_batch_whose_answer_is_lost_is_retried_but_stored_once(sentra: ServerProcess) -> None:
    relay = AnswerSwallowingRelay(sentra.port)
    try:
        agent = Client(f"http://127.0.0.1:{relay.port}", sentra.token()).agent("lost-answer")
        for number in range(3):
            agent.info(f"line {number}")
        assert agent.flush(30)
        agent.close()
    finally:
        relay.close()
    assert relay.swallowed == 1
    assert messages(sentra.history("lost-answer")) == ["line 0", "line 1", "line 2"]


def test_full_buffer_drops_the_oldest_lines_and_reports_how_many(tmp_path: Path) -> None:
    server = ServerProcess.in_folder(tmp_path)
    agent = Client(server.url, server.token(), max_buffer=100).agent("overflow")
    try:
        for number in range(250):
            agent.info(f"line {number}")
        assert agent.dropped == 150
        server.start()
        assert agent.flush(30)
        lines = server.history("overflow")
        notice, rest = lines[0], lines[1:]
        assert notice["level"] == "WARNING" and notice["source"] == "sentra.client"
        assert "dropped 150 log lines" in notice["message"] and notice["fields"] == {"dropped": 150}
        assert messages(rest) == [f"line {number}" for number in range(150, 250)]
    finally:
        agent.close(5)
        server.terminate()


def test_a_line_the_server_refuses_is_dropped_alone(sentra: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    agent = Client(sentra.url, sentra.token()).agent("refused")
    with caplog.at_level(logging.ERROR, logger="sentra.client"):
        agent.info("before")
        agent.info("big", blob="x" * 300_000)  # fields above the server's default limits.max_line_size of 256 KiB
        agent.info("after")
        assert agent.flush(30)
    agent.close()
    assert messages(sentra.history("refused")) == ["before", "after"]
    assert agent.rejected == 1
    assert agent.last_error is not None and "above the limit" in agent.last_error
    assert [record.levelname for record in caplog.records if record.name == "sentra.client"] == ["ERROR"]


def test_context_manager_completes_or_fails_with_the_traceback(sentra: ServerProcess) -> None:
    client = Client(sentra.url, sentra.token())
    with client.agent("cm-ok") as agent:
        agent.info("fine")
    assert sentra.get("/api/agents/cm-ok")["status"] == "completed"

    with pytest.raises(ValueError, match="boom"), client.agent("cm-boom") as agent:
        agent.info("starting")
        raise ValueError("boom")
    record = sentra.get("/api/agents/cm-boom")
    assert (record["status"], record["reason"]) == ("failed", "ValueError: boom")
    first, last = sentra.history("cm-boom")
    assert first["message"] == "starting"
    assert last["level"] == "ERROR" and last["source"] == "traceback"
    assert last["message"].startswith("Traceback (most recent call last):")
    assert last["message"].endswith("ValueError: boom")


def test_each_line_carries_its_level_source_fields_and_call_time(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("shape")
    before = time.time()
    agent.log("planned", level="warning", source="planner", step=3, path=Path("/tmp/x"))
    after = time.time()
    agent.debug("d")
    agent.error("e")
    agent.critical("c")
    agent.log("numeric", level=25)
    assert agent.flush(30)
    agent.close()
    lines = sentra.history("shape")
    assert [(line["message"], line["level"]) for line in lines] == [
        ("planned", "WARNING"),
        ("d", "DEBUG"),
        ("e", "ERROR"),
        ("c", "CRITICAL"),
        ("numeric", "INFO"),
    ]
    assert lines[0]["source"] == "planner"
    assert lines[0]["fields"] == {"step": 3, "path": "/tmp/x"}
    assert before <= lines[0]["ts"] <= after


def test_name_and_labels_are_applied_to_a_new_or_an_existing_agent(sentra: ServerProcess) -> None:
    client = Client(sentra.url, sentra.token())
    fresh = client.agent("labelled", name="nightly eval", labels={"team": "ml"})
    fresh.info("one")
    assert fresh.flush(30)
    fresh.close()
    record = sentra.get("/api/agents/labelled")
    assert (record["name"], record["labels"]) == ("nightly eval", {"team": "ml"})

    assert sentra.send("POST", "/api/agents", {"id": "made-elsewhere"}).status_code == 201
    again = client.agent("made-elsewhere", name="renamed", labels={"stage": "2"})
    again.info("two")
    assert again.flush(30)
    again.close()
    record = sentra.get("/api/agents/made-elsewhere")
    assert (record["name"], record["labels"]) == ("renamed", {"stage": "2"})
    assert messages(sentra.history("made-elsewhere")) == ["two"]


def test_a_bad_token_is_reported_once_and_never_raised(sentra: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    agent = Client(sentra.url, "not-a-token").agent("bad-token")
    with caplog.at_level(logging.ERROR, logger="sentra.client"):
        for number in range(3):
            agent.info(f"line {number}")
            assert agent.flush(30)
    agent.close()
    assert agent.last_error is not None and "(HTTP 401)" in agent.last_error
    errors = [record.getMessage() for record in caplog.records if record.name == "sentra.client"]
    assert len(errors) == 1, errors  # the same refusal for the agent and every batch: reported once
    assert "HTTP 401" in errors[0]


def test_client_module_is_one_standard_library_file(sentra: ServerProcess, tmp_path: Path) -> None:
    source = ROOT / "sentra" / "client.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == set()

    # Vendored as one file and configured by the environment alone.
    shutil.copy(source, tmp_path / "sentra_client.py")
    script = "import sentra_client\nwith sentra_client.Client().agent() as agent:\n    agent.info('vendored')\n"
    env = sentra.agent_env(SENTRA_AGENT="vendored-run")
    env.pop("PYTHONPATH")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert sentra.get("/api/agents/vendored-run")["status"] == "completed"
    assert messages(sentra.history("vendored-run")) == ["vendored"]
