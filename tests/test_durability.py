"""An acknowledged line is never lost: kill -9 at random moments, SIGTERM while writing, start-up errors."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import make_token
from processes import ROOT, ServerProcess, write_config

pytestmark = pytest.mark.slow  # server children killed and restarted

WRITERS = 4
KILLS = 3


async def _write_until_stopped(
    url: str, token: str, agent: str, writer: int, acked: list[str], stop: asyncio.Event
) -> None:
    """Post batches of uniquely named lines, recording each batch only once it is acknowledged."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5) as client:
        batch = 0
        while not stop.is_set() and batch < 10_000:
            batch += 1
            messages = [f"w{writer}-b{batch}-l{n}-{random.random()}" for n in range(random.randint(1, 20))]
            try:
                response = await client.post(f"/api/agents/{agent}/logs", json=[{"message": m} for m in messages])
            except httpx.HTTPError:
                return
            if response.status_code == 200:
                assert response.json()["accepted"] == len(messages)
                acked.extend(messages)


def _stored_messages(db: Path, agent: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT seq, message FROM lines JOIN agents ON agents.pk = lines.agent_pk WHERE agents.id = ? ORDER BY seq",
            (agent,),
        ).fetchall()
    conn.close()
    return [(int(seq), str(message)) for seq, message in rows]


async def test_kill_9_at_random_moments_loses_no_acknowledged_line(tmp_path: Path) -> None:
    db = tmp_path / "sentra.db"
    config = write_config(tmp_path)
    token = make_token("alice")
    acked: list[str] = []
    port: int | None = None
    for _ in range(KILLS):
        proc = ServerProcess(db, port=port, config=config).start()
        port = proc.port
        stop = asyncio.Event()
        writers = [
            asyncio.create_task(_write_until_stopped(proc.url, token, "crashy", w, acked, stop)) for w in range(WRITERS)
        ]
        await asyncio.sleep(random.uniform(0.3, 1.2))
        proc.kill()
        stop.set()
        await asyncio.gather(*writers)
    assert len(acked) > 100, "the writers should have had time to get lines acknowledged"
    proc = ServerProcess(db, port=port, config=config).start()
    try:
        async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {token}"}) as client:
            agent = (await client.get("/api/agents/crashy")).json()
    finally:
        assert proc.terminate() == 0
    stored = _stored_messages(db, "crashy")
    seqs = [seq for seq, _ in stored]
    assert seqs == list(range(1, len(stored) + 1)), "seqs must be gap-free after crashes"
    assert agent["last_seq"] == len(stored)
    messages = [message for _, message in stored]
    assert len(set(messages)) == len(messages), "no line may be stored twice"
    missing = set(acked) - set(messages)
    assert not missing, f"{len(missing)} acknowledged lines were lost"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# "auto", the default, is uvloop wherever uvloop is installed (a dependency of Sentra on Linux and macOS).
@pytest.mark.parametrize(("setting", "event_loop"), [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")])
async def test_sigterm_while_writing_answers_or_refuses_and_loses_nothing(
    tmp_path: Path, setting: str, event_loop: str
) -> None:
    db = tmp_path / "sentra.db"
    proc = ServerProcess(db, config=write_config(tmp_path, server={"event_loop": setting})).start()
    token = make_token("alice")
    acked: list[str] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {token}"}) as client:
        await client.post("/api/agents/calm/logs", json={"message": "before streams"})
        async with client.stream("GET", "/api/agents/calm/logs/stream", timeout=10) as stream:
            assert stream.status_code == 200
            writers = [
                asyncio.create_task(_write_until_stopped(proc.url, token, "calm", w, acked, stop)) for w in range(3)
            ]
            await asyncio.sleep(0.5)
            code = await asyncio.to_thread(proc.terminate)
            stop.set()
            await asyncio.gather(*writers)
            body = b"".join([chunk async for chunk in stream.aiter_bytes()])
    assert code == 0, proc.stderr
    assert f"event loop: {event_loop}" in proc.stderr
    assert b"before streams" in body, "the open stream got its lines and was then closed by the server"
    messages = {message for _, message in _stored_messages(db, "calm")}
    assert acked and not set(acked) - messages


def _start_error(tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, str(ROOT / "server.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


# root ignores file modes; dropping the override capabilities makes it see them like any user.
AS_PLAIN_USER = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner") if os.geteuid() == 0 else ()


def test_read_only_database_is_reported_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "sentra.db"
    proc: ServerProcess = ServerProcess(db, config=write_config(tmp_path)).start()
    assert proc.terminate() == 0
    for path in tmp_path.iterdir():
        path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        result = _start_error(
            tmp_path, "--port", "0", "--db", str(db), "--config", str(tmp_path / "sentra.toml"), prefix=AS_PLAIN_USER
        )
    finally:
        tmp_path.chmod(0o755)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sentra: cannot open the database {db}: ") and "readonly" in lines[0].replace("-", "")


def test_bad_config_stops_start_up_with_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[limits]\nmax_body_size = "huge"\n')
    result = _start_error(tmp_path, "--config", str(config))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"sentra: {config}: limits.max_body_size: 'huge' is not a size such as 256KiB or 8MiB"
    )
    config.write_text("[server]\nhots = 'x'\n")
    result = _start_error(tmp_path, "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"sentra: {config}: unknown setting 'server.hots'"


def test_auth_off_is_refused_on_a_public_address(tmp_path: Path) -> None:
    config = tmp_path / "open.toml"
    config.write_text('[auth]\nmode = "none"\n[server]\nhost = "0.0.0.0"\n')
    result = _start_error(tmp_path, "--config", str(config), "--port", "0")
    assert result.returncode == 2
    assert "auth.mode = none is refused on 0.0.0.0" in result.stderr
