"""The run summary on the agent record: lines per level, first error, usage and end time, kept by the writer in
the transaction that stores the lines, true after retention and DELETE, and counted once for older databases."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory, post_lines
from mcp_client import assistant, call, text_of

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def counts(**given: int) -> dict[str, int]:
    """A level_counts object: every level, zero unless given."""
    return {level: given.get(level, 0) for level in LEVELS}


async def agent_of(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/agents/{agent_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_new_agent_has_an_empty_summary(alice: httpx.AsyncClient) -> None:
    created = (await alice.post("/api/agents", json={"id": "fresh"})).json()
    assert created["level_counts"] == counts()
    assert created["first_error_seq"] is None and created["ended_at"] is None and created["usage"] is None


async def test_counts_per_level_and_first_error_after_ingest(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "run", ["starting", {"message": "details", "level": "debug"}, "working"])
    agent = await agent_of(alice, "run")
    assert agent["level_counts"] == counts(DEBUG=1, INFO=2) and agent["first_error_seq"] is None
    await post_lines(alice, "run", [{"message": "hm", "level": "warning"}, {"message": "boom", "level": "error"}])
    await post_lines(alice, "run", [{"message": "worse", "level": "critical"}, {"message": "x", "level": "error"}])
    agent = await agent_of(alice, "run")
    assert agent["level_counts"] == counts(DEBUG=1, INFO=2, WARNING=1, ERROR=2, CRITICAL=1)
    assert agent["first_error_seq"] == 5
    # The list and the agent record show the same summary.
    listed = (await alice.get("/api/agents")).json()["agents"][0]
    assert listed["level_counts"] == agent["level_counts"] and listed["first_error_seq"] == 5


async def test_agents_written_together_each_get_their_own_counts(alice: httpx.AsyncClient) -> None:
    # Sent at once, the requests meet in the same group commits: each agent's tally is its own.
    async def send(n: int) -> None:
        lines: list[Any] = [f"line {i}" for i in range(n)] + [
            {"message": "bad", "level": "error", "fields": {"cost": n}}
        ]
        await post_lines(alice, f"many-{n}", lines)

    await asyncio.gather(*(send(n) for n in range(1, 21)))
    for n in range(1, 21):
        agent = await agent_of(alice, f"many-{n}")
        assert agent["level_counts"] == counts(INFO=n, ERROR=1)
        assert agent["first_error_seq"] == n + 1 and agent["usage"] == {"tokens": 0, "cost": n}


async def test_a_critical_line_is_a_first_error(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "crit", ["ok", {"message": "down", "level": "critical"}])
    assert (await agent_of(alice, "crit"))["first_error_seq"] == 2


async def test_usage_sums_numeric_tokens_and_cost(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "llm", ["no usage here"])
    assert (await agent_of(alice, "llm"))["usage"] is None
    await post_lines(
        alice,
        "llm",
        [
            {"message": "call 1", "fields": {"tokens": 1200, "cost": 0.25}},
            {"message": "call 2", "fields": {"tokens": 300}},
            {"message": "call 3", "fields": {"cost": 0.5}},
            {"message": "not numbers", "fields": {"tokens": "many", "cost": True}},
        ],
    )
    assert (await agent_of(alice, "llm"))["usage"] == {"tokens": 1500, "cost": 0.75}


async def test_ended_at_is_set_when_the_run_finishes(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "job", ["working"])
    assert (await agent_of(alice, "job"))["ended_at"] is None
    before = time.time()
    finished = (await alice.patch("/api/agents/job", json={"status": "completed"})).json()
    assert before - 1 <= finished["ended_at"] <= time.time() + 1
    await alice.patch("/api/agents/job", json={"name": "renamed later"})
    assert (await agent_of(alice, "job"))["ended_at"] == finished["ended_at"]


async def test_mcp_get_agent_shows_the_summary(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "mcp-run", ["ok", {"message": "bad", "level": "error", "fields": {"tokens": 40}}])
    async with assistant(server) as client:
        record = await call(client, "get_agent", agent_id="mcp-run")
        text = text_of(await client.call_tool("get_agent", {"agent_id": "mcp-run"}))
    assert record["level_counts"] == counts(INFO=1, ERROR=1) and record["first_error_seq"] == 2
    assert record["usage"] == {"tokens": 40, "cost": 0}
    assert "lines by level: INFO 1, ERROR 1" in text and "first error: seq 2" in text and "usage: 40 tokens" in text


async def test_delete_takes_the_summary_with_it(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "gone", [{"message": "bad", "level": "error"}, {"message": "t", "fields": {"tokens": 9}}])
    assert (await alice.delete("/api/agents/gone")).status_code == 204
    await post_lines(alice, "gone", ["a new run under the same id"])
    agent = await agent_of(alice, "gone")
    assert agent["level_counts"] == counts(INFO=1)
    assert agent["first_error_seq"] is None and agent["usage"] is None


async def test_retention_takes_the_trimmed_lines_out_of_the_counts(start_server: ServerFactory) -> None:
    server = await start_server(**{"retention.max_lines_per_agent": 4, "retention.interval": "200ms"})
    async with server.client("alice") as client:
        lines: list[Any] = [
            {"message": "early error", "level": "error", "fields": {"tokens": 100}},
            {"message": "debug", "level": "debug"},
            "info 1",
            "info 2",
            {"message": "later error", "level": "error", "fields": {"tokens": 5, "cost": 0.5}},
            {"message": "warning", "level": "warning"},
        ]
        await post_lines(client, "long", lines)
        before = await agent_of(client, "long")
        assert before["level_counts"] == counts(DEBUG=1, INFO=2, WARNING=1, ERROR=2)
        assert before["first_error_seq"] == 1 and before["usage"] == {"tokens": 105, "cost": 0.5}

        async def trimmed() -> bool:
            return bool((await agent_of(client, "long"))["first_seq"] == 3)

        await wait_for(trimmed)
        after = await agent_of(client, "long")
        assert after["level_counts"] == counts(INFO=2, WARNING=1, ERROR=1)
        assert sum(after["level_counts"].values()) == after["line_count"] == 4
        assert after["first_error_seq"] == 5 and after["usage"] == {"tokens": 5, "cost": 0.5}
        volume = (await client.get("/api/agents/long/volume")).json()["buckets"]
        assert sum(sum(bucket["counts"].values()) for bucket in volume) == 4


async def test_retention_of_every_usage_line_leaves_usage_null(start_server: ServerFactory) -> None:
    server = await start_server(**{"retention.max_lines_per_agent": 2, "retention.interval": "200ms"})
    async with server.client("alice") as client:
        await post_lines(client, "spent", [{"message": "call", "fields": {"tokens": 7}}, "a", "b"])

        async def trimmed() -> bool:
            return bool((await agent_of(client, "spent"))["first_seq"] == 2)

        await wait_for(trimmed)
        agent = await agent_of(client, "spent")
        assert agent["usage"] is None and agent["level_counts"] == counts(INFO=2)


@pytest.mark.slow  # starts the server twice
async def test_a_database_from_an_earlier_version_gets_its_summaries_counted(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    db = tmp_path / "earlier.db"
    first = await start_server(db=db)
    async with first.client("alice") as client:
        for start in range(0, 30_000, 10_000):  # more than one slice of the background count
            await post_lines(client, "old", [f"line {n}" for n in range(start, start + 10_000)])
        await post_lines(client, "old", [{"message": "oops", "level": "error", "fields": {"tokens": 3, "cost": 0.25}}])
        await post_lines(client, "done", ["only line"])
        await client.patch("/api/agents/done", json={"status": "failed"})
    await first.shutdown()
    # Earlier versions had no summaries: what they stored is counted on the first start of this one.
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP TABLE agent_summary")
        conn.execute("DROP TABLE agent_volume")
        updated_at = conn.execute("SELECT updated_at FROM agents WHERE id = 'done'").fetchone()[0]
        conn.commit()
    server = await start_server(db=db)
    async with server.client("alice") as client:
        # Lines arriving while the count runs are counted once.
        await post_lines(client, "old", [{"message": "new", "level": "warning"}])

        async def counted() -> bool:
            return bool((await agent_of(client, "old"))["level_counts"]["INFO"] == 30_000)

        await wait_for(counted)
        old = await agent_of(client, "old")
        assert old["level_counts"] == counts(INFO=30_000, WARNING=1, ERROR=1)
        assert old["first_error_seq"] == 30_001 and old["usage"] == {"tokens": 3, "cost": 0.25}
        done = await agent_of(client, "done")
        assert done["level_counts"] == counts(INFO=1) and done["ended_at"] == updated_at
        volume = (await client.get("/api/agents/old/volume", params={"buckets": 500})).json()["buckets"]
        assert sum(bucket["counts"]["INFO"] for bucket in volume) == 30_000
