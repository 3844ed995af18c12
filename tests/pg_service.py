"""A real PostgreSQL server for the tests, started on a loopback port, and a fresh database per test."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from processes import free_port

STARTUP_TIMEOUT = 30


@dataclass
class PostgresServer:
    """A running postmaster: its port, the admin database URL and where its data lives."""

    port: int
    root: Path

    @property
    def url(self) -> str:
        """The URL of the admin database (superuser postgres, trust auth on loopback)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        pytest.fail(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
            "install them with `apt-get install postgresql` (Debian/Ubuntu) to run the scale-out tests",
            pytrace=False,
        )
    return Path(found[-1]).parent


def _runner(root: Path) -> list[str]:
    """The prefix that runs a PostgreSQL binary as a user it accepts (it refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root needs the 'postgres' user (created by `apt-get install postgresql`)")
    shutil.chown(root, "postgres", "postgres")
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def _run(command: list[str], root: Path, what: str) -> None:
    result = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=STARTUP_TIMEOUT + 10, check=False
    )
    if result.returncode != 0:
        log = root / "postgres.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"PostgreSQL {what} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole test session: initdb in a temp dir, fsync off, trust auth on 127.0.0.1."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="sentra-pg-"))
    prefix = _runner(root)
    data = root / "data"
    port = free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]
    _run([*prefix, *initdb, "--no-sync"], root, "initdb")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=300"
    )
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    _run(
        [*pg_ctl, "-l", str(root / "postgres.log"), "-o", options, "-w", "-t", str(STARTUP_TIMEOUT), "start"],
        root,
        "start",
    )
    try:
        yield PostgresServer(port, root)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"], cwd=root, capture_output=True, timeout=40)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def pg_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    name = f"sentra_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server.url, timeout=10)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield postgres_server.database_url(name)
    admin = await asyncpg.connect(postgres_server.url, timeout=10)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
