"""Run summaries and volume on PostgreSQL: the SQLite tests against one server on PostgreSQL, an upgrade of a
database made without summaries, and two processes on PostgreSQL + Redis writing to one agent."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import ServerFactory, open_stream, post_lines
from processes import ServerProcess
from test_summary import (
    agent_of,
    counts,
    test_a_critical_line_is_a_first_error,
    test_agents_written_together_each_get_their_own_counts,
    test_counts_per_level_and_first_error_after_ingest,
    test_delete_takes_the_summary_with_it,
    test_ended_at_is_set_when_the_run_finishes,
    test_retention_of_every_usage_line_leaves_usage_null,
    test_retention_takes_the_trimmed_lines_out_of_the_counts,
    test_usage_sums_numeric_tokens_and_cost,
    wait_for,
)
from test_volume import (
    test_a_long_run_is_counted_by_the_minute,
    test_an_agent_without_lines_has_no_buckets,
    test_buckets_cover_the_run_and_add_up_to_its_lines,
    test_new_lines_show_up_live,
    test_ownership_as_elsewhere,
    test_since_and_until_narrow_the_span,
    total,
)

pytestmark = pytest.mark.slow  # PostgreSQL, Redis, server children

# Collected here too (pytest collects the test functions a module holds), with start_server below.
SHARED = (
    test_agents_written_together_each_get_their_own_counts,
    test_a_critical_line_is_a_first_error,
    test_counts_per_level_and_first_error_after_ingest,
    test_delete_takes_the_summary_with_it,
    test_ended_at_is_set_when_the_run_finishes,
    test_retention_of_every_usage_line_leaves_usage_null,
    test_retention_takes_the_trimmed_lines_out_of_the_counts,
    test_usage_sums_numeric_tokens_and_cost,
    test_a_long_run_is_counted_by_the_minute,
    test_an_agent_without_lines_has_no_buckets,
    test_buckets_cover_the_run_and_add_up_to_its_lines,
    test_new_lines_show_up_live,
    test_ownership_as_elsewhere,
    test_since_and_until_narrow_the_span,
)


@pytest.fixture
def start_server(start_server: ServerFactory, pg_url: str) -> ServerFactory:
    """Every server of the shared tests on this test's PostgreSQL database."""

    async def start(**settings: Any) -> Any:
        return await start_server(**{"storage.url": pg_url, **settings})

    return start


async def test_a_database_from_an_earlier_version_gets_its_summaries_counted(
    start_server: ServerFactory, pg_url: str
) -> None:
    first = await start_server()
    async with first.client("alice") as client:
        for start in range(0, 30_000, 10_000):
            await post_lines(client, "old", [f"line {n}" for n in range(start, start + 10_000)])
        await post_lines(client, "old", [{"message": "oops", "level": "error", "fields": {"tokens": 3}}])
        await post_lines(client, "done", ["only line"])
        await client.patch("/api/agents/done", json={"status": "completed"})
    await first.shutdown()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("DROP TABLE agent_summary; DROP TABLE agent_volume")
        updated_at = await conn.fetchval("SELECT updated_at FROM agents WHERE id = 'done'")
    finally:
        await conn.close()
    server = await start_server()
    async with server.client("alice") as client:
        await post_lines(client, "old", [{"message": "new", "level": "warning"}])

        async def counted() -> bool:
            return bool((await agent_of(client, "old"))["level_counts"]["INFO"] == 30_000)

        await wait_for(counted, 20)
        old = await agent_of(client, "old")
        assert old["level_counts"] == counts(INFO=30_000, WARNING=1, ERROR=1)
        assert old["first_error_seq"] == 30_001 and old["usage"] == {"tokens": 3, "cost": 0}
        done = await agent_of(client, "done")
        assert done["level_counts"] == counts(INFO=1) and done["ended_at"] == updated_at
        volume = (await client.get("/api/agents/old/volume", params={"buckets": 500})).json()["buckets"]
        assert total(volume) == 30_002


async def test_two_processes_writing_one_agent_keep_one_true_summary(pair: list[ServerProcess]) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        async with open_stream(on_b, "/api/agent-events") as feed:
            snapshot = await feed.next(10)
            assert snapshot is not None and snapshot.json()["type"] == "snapshot"

            async def send(client: httpx.AsyncClient, level: str) -> None:
                for n in range(20):
                    lines = [{"message": f"{level} {n}.{i}", "level": level, "fields": {"tokens": 1}} for i in range(5)]
                    await post_lines(client, "shared", lines)

            await asyncio.gather(send(on_a, "info"), send(on_b, "error"), send(on_a, "warning"))
            expected = counts(INFO=100, WARNING=100, ERROR=100)
            for client in (on_a, on_b):
                agent = await agent_of(client, "shared")
                assert agent["level_counts"] == expected and agent["usage"] == {"tokens": 300, "cost": 0}
                errors = (await client.get("/api/agents/shared/logs", params={"level": "error", "limit": 1})).json()
                assert agent["first_error_seq"] == errors["lines"][0]["seq"]
                buckets = (await client.get("/api/agents/shared/volume", params={"buckets": 7})).json()["buckets"]
                assert total(buckets) == 300 and total(buckets, "ERROR") == 100
            # The feed on B shows the summary of lines that arrived through A too.
            seen: dict[str, int] = {}
            for _ in range(200):
                event = await feed.next(10)
                assert event is not None
                for agent in event.json()["agents"]:
                    if agent["id"] == "shared":
                        seen = agent["level_counts"]
                if seen == expected:
                    break
            assert seen == expected
        assert (await on_a.patch("/api/agents/shared", json={"status": "failed"})).status_code == 200
        assert (await agent_of(on_b, "shared"))["ended_at"] is not None
