"""Sentra as a child process, started exactly as the README says: `python server.py ...`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A `python server.py` child and what it printed at start-up."""

    process: subprocess.Popen[str]
    port: int
    banner: list[str]
    stderr: str = ""

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        self.process.send_signal(signal.SIGKILL)
        self._collect(10)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self._collect(timeout)

    def _collect(self, timeout: float) -> int:
        """Wait for the exit, keeping stderr and closing the pipes."""
        _, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode


def write_config(directory: Path, **sections: dict[str, object]) -> Path:
    """A sentra.toml with the test secret and the given extra [section] keys."""
    body = {"auth": {"jwt_secret": SECRET}, "server": {"access_log": False}}
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


def start_process(
    db: Path,
    *,
    port: int | None = None,
    config: Path | None = None,
    cwd: Path | None = None,
    banner_lines: int = 3,
    timeout: float = 20,
) -> ServerProcess:
    """Run `python server.py --port P --db F [--config C]` and wait for its banner (3 lines with a token)."""
    port = port or free_port()
    args = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--db", str(db)]
    if config is not None:
        args += ["--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        args, cwd=cwd or db.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    banner: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        banner.append(line.rstrip("\n"))
        if re.match(r"Sentra listening on ", line):
            # The rest of the banner (the ready token) follows at once.
            while len(banner) < banner_lines and process.poll() is None:
                more = process.stdout.readline()
                if not more:
                    break
                banner.append(more.rstrip("\n"))
            return ServerProcess(process, port, banner)
    process.kill()
    _, err = process.communicate(timeout=5)
    raise RuntimeError(f"server did not start: {banner} {err}")
