"""Background upkeep: silent agents are failed, retention trims lines and deletes old finished agents."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest
from conftest import RunningServer, ServerFactory, open_stream


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.slow  # waits out an agent's silence timeout
async def test_silent_agent_is_failed_with_reason_timeout_and_its_stream_ends(start_server: ServerFactory) -> None:
    server: RunningServer = await start_server(**{"agents.timeout": "1s"})
    async with server.client("alice") as client:
        await client.post("/api/agents/quiet/logs", json={"message": "started, then hangs"})
        await client.post("/api/agents/busy/logs", json={"message": "keeps talking"})
        async with open_stream(client, "/api/agents/quiet/logs/stream") as stream:
            first = await stream.next()
            assert first is not None and first.json()["logs"] == "started, then hangs\n"
            for _ in range(6):  # busy keeps logging for 3 s: it must stay running
                await asyncio.sleep(0.5)
                await client.post("/api/agents/busy/logs", json={"message": "still here"})
            final = await stream.next(timeout=5)
            assert final is not None
            assert final.json()["final"] is True
            assert final.json()["status"] == "failed" and final.json()["reason"] == "timeout"
            assert await stream.next() is None
        assert (await client.get("/api/agents/quiet")).json()["status"] == "failed"
        assert (await client.get("/api/agents/busy")).json()["status"] == "running"


async def test_retention_keeps_the_newest_lines_per_agent(start_server: ServerFactory) -> None:
    server = await start_server(**{"retention.max_lines_per_agent": 10, "retention.interval": "200ms"})
    async with server.client("alice") as client:
        await client.post("/api/agents/long/logs", json=[f"line {n}" for n in range(1, 26)])

        async def trimmed() -> bool:
            return bool((await client.get("/api/agents/long")).json()["first_seq"] == 16)

        await _wait_for(trimmed)
        agent = (await client.get("/api/agents/long")).json()
        assert agent["line_count"] == 10 and agent["last_seq"] == 25
        history = (await client.get("/api/agents/long/logs")).json()["lines"]
        assert [line["message"] for line in history] == [f"line {n}" for n in range(16, 26)]
        # New lines keep counting from where they were.
        answer = await client.post("/api/agents/long/logs", json={"message": "line 26"})
        assert answer.json()["first_seq"] == 26


@pytest.mark.slow  # waits for retention passes
async def test_retention_deletes_finished_agents_past_max_age_but_not_running_ones(
    start_server: ServerFactory,
) -> None:
    server = await start_server(**{"retention.max_age": "1s", "retention.interval": "200ms"})
    async with server.client("alice") as client:
        await client.post("/api/agents/done/logs", json={"message": "finished long ago"})
        await client.patch("/api/agents/done", json={"status": "completed"})
        await client.post("/api/agents/live/logs", json={"message": "still running"})

        async def gone() -> bool:
            return (await client.get("/api/agents/done")).status_code == 404

        await _wait_for(gone)
        assert (await client.get("/api/agents/live")).status_code == 200


@pytest.mark.slow  # waits for retention passes
async def test_a_database_from_an_earlier_version_keeps_its_agents_and_retention_still_finds_finished_ones(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    db = tmp_path / "earlier.db"
    first = await start_server(db=db)
    async with first.client("alice") as client:
        await client.post("/api/agents/done/logs", json={"message": "finished long ago"})
        await client.patch("/api/agents/done", json={"status": "completed"})
        await client.post("/api/agents/live/logs", json={"message": "still running"})
    await first.shutdown()
    # Earlier versions indexed every agent by status and updated_at, an index each commit rewrote.
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP INDEX agents_finished")
        conn.execute("CREATE INDEX agents_by_status ON agents (status, updated_at)")
        conn.commit()
    server = await start_server(db=db, **{"retention.max_age": "1s", "retention.interval": "200ms"})
    async with server.client("alice") as client:
        live = (await client.get("/api/agents/live/logs")).json()
        assert [line["message"] for line in live["lines"]] == ["still running"]

        async def gone() -> bool:
            return (await client.get("/api/agents/done")).status_code == 404

        await _wait_for(gone)
        assert (await client.get("/api/agents/live")).json()["status"] == "running"
    with closing(sqlite3.connect(db)) as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "agents_by_status" not in indexes and "agents_finished" in indexes
