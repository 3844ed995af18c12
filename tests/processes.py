"""Sentra as a child process, started exactly as the README says (`python server.py --port P --db F --config C`),
and the fixtures that start children: the one harness of every test that needs a real process (a restart, a
crash, two processes on PostgreSQL and Redis, the agent side's commands and scripts, an installed package)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from conftest import SECRET, TLS, make_token

ROOT = Path(__file__).resolve().parent.parent
SERVER = (sys.executable, str(ROOT / "server.py"))


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, **sections: dict[str, object]) -> Path:
    """A sentra.toml with the test secret and the given extra [section] keys."""
    body: dict[str, dict[str, object]] = {"auth": {"jwt_secret": SECRET}, "server": {"access_log": False}}
    for section, values in sections.items():
        body.setdefault(section, {}).update(values)
    lines = []
    for section, values in body.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            rendered = str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')
            lines.append(f"{key} = {rendered}")
    path = directory / "sentra.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class _Drain:
    """Reads a child's pipe to its end on a thread of its own, so a chatty child never blocks on a full pipe."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.lines.append(line)

    def text(self) -> str:
        """Everything read so far (all of it once the child has exited)."""
        self._thread.join(5)
        return "".join(self.lines)


class ServerProcess:
    """A Sentra server child on a loopback port, restartable on the same port and database; what it prints is
    kept (`banner`, `stderr`)."""

    def __init__(
        self,
        db: Path,
        *,
        config: Path | None = None,
        port: int | None = None,
        cwd: Path | None = None,
        command: Sequence[str] = SERVER,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.directory = db.parent
        self.config = config
        self.port = port or free_port()
        self.cwd = cwd or db.parent
        self.command = list(command)
        # Settings the tests' own environment might carry must not reach the server.
        clean = {key: value for key, value in os.environ.items() if not key.startswith("SENTRA_")}
        self.env = {**(clean if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[str] | None = None
        self.banner: list[str] = []
        self._out: _Drain | None = None
        self._err: _Drain | None = None

    @classmethod
    def in_folder(cls, directory: Path, **sections: dict[str, object]) -> ServerProcess:
        """A child (not started) on directory/sentra.db, its sentra.toml there: the test secret and these settings."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / "sentra.db", config=write_config(directory, **sections))

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        """What the child wrote to stderr since it last started (all of it once it has exited)."""
        return self._err.text() if self._err is not None else ""

    def start(self, timeout: float = 20.0, banner_lines: int = 3) -> ServerProcess:
        """Start the child and wait for its banner: "Sentra listening on ..." and the lines after it."""
        assert self.process is None or self.process.poll() is not None, "the server is already running"
        args = [*self.command, "--port", str(self.port), "--db", str(self.db)]
        args += ["--config", str(self.config)] if self.config is not None else []
        self.process = subprocess.Popen(
            args, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", preexec_fn=self.preexec_fn,
        )  # fmt: skip
        self._out, self._err = _Drain(self.process.stdout), _Drain(self.process.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            printed = [line.rstrip("\n") for line in self._out.lines]
            opening = next((n for n, line in enumerate(printed) if line.startswith("Sentra listening on ")), None)
            if opening is not None and len(printed) - opening >= banner_lines:
                self.banner = printed[opening : opening + banner_lines]
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"the server did not start: {self._out.text()!r} {self.stderr[-2000:]}")

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then wait for a clean exit; the exit code (None if it never started)."""
        return self._stop(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """kill -9: no chance to flush anything; the exit code (None if it never started)."""
        return self._stop(signal.SIGKILL, 10)

    def _stop(self, how: signal.Signals, timeout: float) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"the server did not exit within {timeout} s of {how.name}") from None

    def token(self, sub: str = "alice") -> str:
        """A valid token for `sub`."""
        return make_token(sub)

    def client(self, sub: str = "alice", token: str | None = None) -> httpx.AsyncClient:
        """An HTTP client on this server, as `sub` (or with `token`)."""
        headers = {"Authorization": f"Bearer {token or self.token(sub)}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0, verify=TLS)

    def agent_env(self, sub: str | None = "alice", **extra: str) -> dict[str, str]:
        """Environment for an agent-side child (`sentra run`, a script) that talks to this server as `sub`."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("SENTRA_")}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", SENTRA_URL=self.url)
        if sub is not None:
            env["SENTRA_TOKEN"] = self.token(sub)
        env.update(extra)
        return env

    def get(self, path: str, sub: str = "alice", **params: Any) -> Any:
        """GET an API path as `sub` (with httpx, independent of the client under test); the JSON answer."""
        headers = {"Authorization": f"Bearer {self.token(sub)}"}
        response = httpx.get(self.url + path, headers=headers, params=params, timeout=10.0, verify=TLS)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: Any, sub: str = "alice") -> httpx.Response:
        """A write request as `sub`, with httpx."""
        headers = {"Authorization": f"Bearer {self.token(sub)}"}
        return httpx.request(method, self.url + path, json=body, headers=headers, timeout=10.0, verify=TLS)

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


# ---- the agent side as children: `sentra` commands against a server child ----------------------------------

TAIL_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (?P<level>[A-Z]+) +(?P<rest>.*)$")


def cli(server: ServerProcess, *args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> Any:
    """Run `python -m sentra ARGS…` to its end; the CompletedProcess (bytes)."""
    return subprocess.run(
        [sys.executable, "-m", "sentra", *args],
        env=env or server.agent_env(),
        input=stdin,
        capture_output=True,
        cwd=server.directory,
        timeout=60,
        check=False,
    )


def post_line(server: ServerProcess, agent_id: str, message: str, **extra: Any) -> None:
    """Ingest one line over HTTP, as an agent would."""
    response = server.send("POST", f"/api/agents/{agent_id}/logs", {"message": message, **extra})
    assert response.status_code == 200, response.text


def finish(server: ServerProcess, agent_id: str, status: str, reason: str | None = None) -> None:
    """Mark an agent completed or failed."""
    body = {"status": status, **({"reason": reason} if reason else {})}
    assert server.send("PATCH", f"/api/agents/{agent_id}", body).status_code == 200


class TailProcess:
    """A running `sentra tail` whose stdout lines are collected as they come."""

    def __init__(self, server: ServerProcess, *args: str) -> None:
        self.err_path = server.directory / f"tail-{uuid.uuid4().hex}.err"
        with open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sentra", "tail", *args],
                env=server.agent_env(),
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=server.directory,
            )
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode().rstrip("\n"))
        self._lines.put(None)

    def expect(self, text: str, timeout: float = 15.0) -> None:
        """Wait until a printed line contains `text`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"tail printed no {text!r} in {timeout} s; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"tail ended before printing {text!r}; saw {self.seen}; {self.stderr}")
            self.seen.append(line)
            if text in line:
                return

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for tail to exit; its exit code (every printed line is then in `seen`)."""
        code = self.process.wait(timeout)
        self._reader.join(5)
        while (line := self._lines.get_nowait()) is not None:
            self.seen.append(line)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code

    def stop(self) -> None:
        """Kill tail if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.wait()

    @property
    def stderr(self) -> str:
        """What tail wrote on stderr so far."""
        return self.err_path.read_text()

    def printed(self) -> list[tuple[str, str]]:
        """(level, source-and-message) of every line printed so far."""
        found = [TAIL_LINE.match(line) for line in self.seen]
        assert all(found), self.seen
        return [(match.group("level"), match.group("rest")) for match in found if match]


# ---- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentra(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `python server.py` child shared by the tests of a module (each test uses its own agent ids)."""
    server = ServerProcess.in_folder(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    server.start()
    yield server
    server.terminate()


@pytest.fixture
def scale_out_config(tmp_path: Path, pg_url: str, redis_url: str, bus_prefix: str) -> Path:
    """A sentra.toml for processes that share this test's PostgreSQL database and Redis prefix."""
    return write_config(tmp_path, storage={"url": pg_url}, bus={"url": redis_url, "prefix": bus_prefix})


@pytest.fixture
def pair(tmp_path: Path, scale_out_config: Path) -> Iterator[list[ServerProcess]]:
    """Two Sentra processes on one PostgreSQL database and one Redis (a test may kill either)."""
    processes: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            processes.append(ServerProcess(tmp_path / f"{name}.db", config=scale_out_config).start())
        yield processes
    finally:
        for process in processes:
            process.terminate()
