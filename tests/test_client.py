"""The Python client against a real `python server.py` child: order, batching, retries across a restart,
the bounded buffer, refusals, the context manager, and use as one vendored file.

Also home of SentraProcess, the restartable server child that test_handler.py and test_cli.py use too.
"""

from __future__ import annotations

import ast
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SECRET, make_token

from sentra.client import Client

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SentraProcess:
    """`python server.py --port P --db F --config C` as a child, restartable on the same port and database."""

    def __init__(self, directory: Path, **settings: Any) -> None:
        self.directory = directory
        self.port = free_port()
        self.db = directory / "sentra.db"
        self.config = directory / "sentra.toml"
        sections: dict[str, dict[str, Any]] = {"auth": {"jwt_secret": SECRET}, "server": {"access_log": False}}
        for name, value in settings.items():
            section, key = name.split(".", 1)
            sections.setdefault(section, {})[key] = value
        text = ""
        for section, values in sections.items():
            text += f"[{section}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in values.items())
        self.config.write_text(text)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the child and wait for its "Sentra listening on" line."""
        self.starts += 1
        out_path = self.directory / f"server-{self.starts}.out"
        err_path = self.directory / f"server-{self.starts}.err"
        args = [sys.executable, "server.py", "--config", str(self.config), "--port", str(self.port)]
        args += ["--db", str(self.db)]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.process = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=err, env=self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"Sentra listening on" in out_path.read_bytes():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the server did not start: {err_path.read_text()[-2000:]}")

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL (a crash), then wait for the child to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def token(self, sub: str = "alice") -> str:
        """A valid token for `sub`."""
        return make_token(sub)

    def env(self, sub: str | None = "alice", **extra: str) -> dict[str, str]:
        """Environment for a child that talks to this server as `sub`."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("SENTRA_")}
        env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", SENTRA_URL=self.url)
        if sub is not None:
            env["SENTRA_TOKEN"] = self.token(sub)
        env.update(extra)
        return env

    def get(self, path: str, sub: str = "alice", **params: Any) -> Any:
        """GET an API path as `sub` (with httpx, independent of the client under test); the JSON answer."""
        headers = {"Authorization": f"Bearer {self.token(sub)}"}
        response = httpx.get(self.url + path, headers=headers, params=params, timeout=10.0)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: Any, sub: str = "alice") -> httpx.Response:
        """A write request as `sub`, with httpx."""
        headers = {"Authorization": f"Bearer {self.token(sub)}"}
        return httpx.request(method, self.url + path, json=body, headers=headers, timeout=10.0)

    def history(self, agent_id: str) -> list[dict[str, Any]]:
        """Every stored line of an agent, in seq order."""
        lines: list[dict[str, Any]] = []
        after = 0
        for _ in range(100):
            page = self.get(f"/api/agents/{agent_id}/logs", after=after, limit=10000)
            lines += page["lines"]
            if page["next_after"] is None:
                return lines
            after = page["next_after"]
        raise AssertionError("history did not end within 100 pages")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value) + '"'


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


@pytest.fixture(scope="module")
def sentra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentraProcess]:
    """One server child shared by the tests of this module (each uses its own agent ids)."""
    server = SentraProcess(tmp_path_factory.mktemp("client"))
    server.start()
    yield server
    server.stop()


def messages(lines: list[dict[str, Any]]) -> list[str]:
    """The messages of history lines."""
    return [line["message"] for line in lines]


def test_burst_of_10000_lines_arrives_complete_and_in_order(sentra: SentraProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("burst")
    for number in range(10000):
        agent.info(f"line {number}", n=number)
    assert agent.flush(60)
    agent.close()
    lines = sentra.history("burst")
    assert messages(lines) == [f"line {number}" for number in range(10000)]
    assert [line["seq"] for line in lines] == list(range(1, 10001))
    assert [line["fields"]["n"] for line in lines] == list(range(10000))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_lines_logged_while_the_server_restarts_are_stored_once_each(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    server = SentraProcess(tmp_path)
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
        server.stop(stop_signal)
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
        server.stop()


def test_a_batch_whose_answer_is_lost_is_retried_but_stored_once(sentra: SentraProcess) -> None:
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
    server = SentraProcess(tmp_path)
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
        server.stop()


def test_a_line_the_server_refuses_is_dropped_alone(sentra: SentraProcess, caplog: pytest.LogCaptureFixture) -> None:
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


def test_context_manager_completes_or_fails_with_the_traceback(sentra: SentraProcess) -> None:
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


def test_each_line_carries_its_level_source_fields_and_call_time(sentra: SentraProcess) -> None:
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


def test_name_and_labels_are_applied_to_a_new_or_an_existing_agent(sentra: SentraProcess) -> None:
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


def test_a_bad_token_is_reported_once_and_never_raised(sentra: SentraProcess, caplog: pytest.LogCaptureFixture) -> None:
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


def test_client_module_is_one_standard_library_file(sentra: SentraProcess, tmp_path: Path) -> None:
    source = REPO / "sentra" / "client.py"
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
    env = sentra.env(SENTRA_AGENT="vendored-run")
    env.pop("PYTHONPATH")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert sentra.get("/api/agents/vendored-run")["status"] == "completed"
    assert messages(sentra.history("vendored-run")) == ["vendored"]
