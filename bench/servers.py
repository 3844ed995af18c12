"""Start and stop the three servers under test on 127.0.0.1, each in its own working directory.

- Sentra: `python server.py --port P --db <dir>/sentra.db --config <dir>/sentra.toml`, the config setting
  only a known auth.jwt_secret (plus any --sentra-set overrides), so everything else is the default:
  SQLite on disk, auth on, access log on (to a file).
- nchan: Debian's nginx with libnginx-mod-nchan, one worker, a publisher location, an EventSource
  subscriber location and a message buffer of 1,000 per channel.
- peer: bench/peer_starlette.py on uvicorn (uvloop, httptools), one process.

Every server gets the largest open-file limit this machine allows (10,000 idle connections need it).
"""

from __future__ import annotations

import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

NGINX_CONF = """\
load_module {module};
daemon off;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 3600s;
    nchan_max_reserved_memory 512M;
    nchan_message_buffer_length 1000;
    nchan_message_timeout 5m;
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            client_max_body_size 8m;
            client_body_buffer_size 1m;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
        }}
    }}
}}
"""


def fd_limit() -> int:
    """The largest open-file limit a process may set here (the hard limit, at most 65,536)."""
    return min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)


def _raise_limit() -> None:
    limit = fd_limit()
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server: its kind, port, main process and working directory."""

    kind: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    secret: str = ""
    logs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The main process id (nginx's master; the worker is its child)."""
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Sentra drains and closes its database), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for handle in (self.process.stdout, self.process.stderr):
            if handle is not None:
                handle.close()

    def tail(self, lines: int = 20) -> str:
        """The end of the server's logs, for error messages."""
        out = []
        for path in self.logs:
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)


def _spawn(kind: str, args: list[str], workdir: Path, port: int, **extra: str) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / "stdout.log", workdir / "stderr.log"
    process = subprocess.Popen(
        args,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        preexec_fn=_raise_limit,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = Server(kind, port, process, workdir, logs=[out, err], **extra)
    _wait_ready(server)
    return server


def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    """Poll until the server answers HTTP on its port."""
    deadline = time.monotonic() + timeout
    path = "/healthz" if server.kind != "nchan" else "/pub/ready"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind} exited at start-up:\n{server.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 "):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.kind} did not answer on port {server.port} within {timeout:.0f} s:\n{server.tail()}")


def start_sentra(workdir: Path, settings: dict[str, str] | None = None, *, secret: str | None = None) -> Server:
    """Sentra with its default config, a known HS256 secret (the given one, or new) and a fresh database file."""
    secret = secret or secrets.token_urlsafe(32)
    sections: dict[str, list[str]] = {"auth": [f'jwt_secret = "{secret}"']}
    for name, value in (settings or {}).items():
        section, key = name.split(".", 1)
        sections.setdefault(section, []).append(f"{key} = {value}")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "sentra.toml"
    config.write_text("".join(f"[{s}]\n" + "\n".join(keys) + "\n" for s, keys in sections.items()))
    port = free_port()
    args = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--db", str(workdir / "sentra.db")]
    return _spawn("sentra", [*args, "--config", str(config)], workdir, port, secret=secret)


def start_nchan(workdir: Path) -> Server:
    """nginx + nchan with one worker, in the foreground."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    limit = fd_limit()
    conf.write_text(
        NGINX_CONF.format(module=NCHAN_MODULE, nofile=limit, connections=limit - 100, dir=workdir, port=port)
    )
    server = _spawn(
        "nchan", ["nginx", "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log")], workdir, port
    )
    server.logs.append(workdir / "error.log")
    return server


def start_peer(workdir: Path) -> Server:
    """The Starlette peer, one uvicorn process."""
    port = free_port()
    return _spawn(
        "peer", [sys.executable, str(ROOT / "bench" / "peer_starlette.py"), "--port", str(port)], workdir, port
    )


STARTERS = {"sentra": start_sentra, "nchan": start_nchan, "peer": start_peer}
