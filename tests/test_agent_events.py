"""/api/agent-events: the agents page's live feed of the caller's agents."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from conftest import RunningServer, ServerFactory, SSEReader, make_token, open_stream


async def next_data(reader: SSEReader, timeout: float = 5.0) -> dict[str, Any]:
    """The next event's JSON (failing if the stream closes)."""
    event = await reader.next(timeout)
    assert event is not None, "the feed closed"
    assert event.id is None  # no resume point: a reconnect starts with a fresh snapshot
    data: dict[str, Any] = event.json()
    return data


async def until(reader: SSEReader, wanted: Any, timeout: float = 5.0) -> dict[str, Any]:
    """Events until one satisfies `wanted`; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        data = await next_data(reader, left)
        if wanted(data):
            return data
    raise AssertionError("no such event in time")


def ids(data: dict[str, Any]) -> list[str]:
    return [agent["id"] for agent in data["agents"]]


async def test_feed_starts_with_a_snapshot_of_the_callers_agents_only(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        await alice.post("/api/agents/a-1/logs", json=["one", "two"])
        await alice.post("/api/agents", json={"id": "a-2", "name": "second", "labels": {"batch": "7"}})
        await bob.post("/api/agents/b-1/logs", json="bob's")
        async with open_stream(alice, "/api/agent-events") as reader:
            assert reader.response.status_code == 200
            snapshot = await next_data(reader)
    assert snapshot["type"] == "snapshot"
    assert ids(snapshot) == ["a-2", "a-1"]  # newest first, as GET /api/agents
    first = snapshot["agents"][1]
    assert (first["line_count"], first["status"]) == (2, "running")
    assert snapshot["agents"][0]["labels"] == {"batch": "7"}


async def test_created_agent_and_its_status_changes_arrive_live(server: RunningServer) -> None:
    async with server.client("alice") as alice, open_stream(alice, "/api/agent-events") as reader:
        assert ids(await next_data(reader)) == []
        await alice.post("/api/agents", json={"id": "new", "name": "fresh"})
        created = await next_data(reader)
        assert (created["type"], ids(created), created["agents"][0]["name"]) == ("update", ["new"], "fresh")
        await alice.patch("/api/agents/new", json={"name": "renamed", "labels": {"team": "ml"}})
        renamed = await next_data(reader)
        assert (renamed["agents"][0]["name"], renamed["agents"][0]["labels"]) == ("renamed", {"team": "ml"})
        await alice.patch("/api/agents/new", json={"status": "failed", "reason": "boom"})
        failed = await next_data(reader)
        assert (failed["agents"][0]["status"], failed["agents"][0]["reason"]) == ("failed", "boom")


async def test_other_users_agents_never_appear(server: RunningServer) -> None:
    async with (
        server.client("alice") as alice,
        server.client("bob") as bob,
        open_stream(alice, "/api/agent-events") as reader,
    ):
        await next_data(reader)
        await bob.post("/api/agents/bobs/logs", json="secret")
        await bob.patch("/api/agents/bobs", json={"status": "completed"})
        await alice.post("/api/agents", json={"id": "mine"})
        # Events keep their order: had bob's agent been sent, it would come before alice's.
        assert ids(await next_data(reader)) == ["mine"]


@pytest.mark.slow  # waits out the once-a-second activity
async def test_line_activity_is_sent_at_most_once_a_second_and_the_last_count_arrives(server: RunningServer) -> None:
    async with server.client("alice") as alice, open_stream(alice, "/api/agent-events") as reader:
        await next_data(reader)
        seen: list[tuple[float, int]] = []

        async def watch() -> None:
            while True:
                data = await next_data(reader, 10)
                for agent in data["agents"]:
                    seen.append((time.monotonic(), agent["line_count"]))

        watcher = asyncio.create_task(watch())
        for batch in range(15):
            await alice.post("/api/agents/busy/logs", json=[f"line {batch}-{i}" for i in range(10)])
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 5
        while (not seen or seen[-1][1] < 150) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        watcher.cancel()
    counts = [count for _, count in seen]
    assert counts[-1] == 150, counts  # the activity after the last report is not lost
    assert counts == sorted(counts)
    # 15 batches over ~1.5 s: the creation, then activity no more than once a second.
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen[1:])]
    assert len(seen) <= 4, counts
    assert all(gap >= 0.9 for gap in gaps), gaps


async def test_deleted_agent_is_removed(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/old/logs", json="x")
        async with open_stream(alice, "/api/agent-events") as reader:
            assert ids(await next_data(reader)) == ["old"]
            await alice.delete("/api/agents/old")
            removed = await next_data(reader)
    assert (removed["type"], ids(removed)) == ("removed", ["old"])


async def test_label_feed_picks_up_new_matches_and_drops_agents_relabelled_away(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents", json={"id": "in", "labels": {"batch": "42"}})
        await alice.post("/api/agents", json={"id": "out", "labels": {"batch": "41"}})
        async with open_stream(alice, "/api/agent-events", label="batch=42") as reader:
            assert ids(await next_data(reader)) == ["in"]
            await alice.post("/api/agents", json={"id": "late", "labels": {"batch": "42"}})
            assert ids(await next_data(reader)) == ["late"]
            await alice.patch("/api/agents/in", json={"labels": {"batch": "43"}})
            removed = await next_data(reader)
            assert (removed["type"], ids(removed)) == ("removed", ["in"])
            await alice.post("/api/agents/in/logs", json="still writing")
            await alice.patch("/api/agents/out", json={"status": "completed"})
            await alice.patch("/api/agents/late", json={"status": "completed"})
            # Neither the relabelled agent's lines nor the other batch show up before this.
            done = await until(reader, lambda data: data["type"] == "update")
            assert ids(done) == ["late"] and done["agents"][0]["status"] == "completed"


@pytest.mark.slow  # waits for a token to expire
async def test_feed_ends_with_a_reason_when_the_token_expires(server: RunningServer) -> None:
    token = make_token("alice", exp=int(time.time()) + 2)
    async with server.client(None) as client:
        headers = {"Authorization": f"Bearer {token}"}
        async with open_stream(client, "/api/agent-events", headers=headers) as reader:
            assert (await next_data(reader))["type"] == "snapshot"
            end = await next_data(reader, 8)
            assert end == {"type": "end", "agents": [], "reason": "token_expired"}
            assert await reader.next() is None


@pytest.mark.slow  # waits for a token to expire
async def test_busy_agent_does_not_keep_an_expired_token_alive(server: RunningServer) -> None:
    token = make_token("alice", exp=int(time.time()) + 2)
    async with server.client("alice") as writer, server.client(None) as client:
        headers = {"Authorization": f"Bearer {token}"}
        async with open_stream(client, "/api/agent-events", headers=headers) as reader:
            await next_data(reader)
            deadline = time.monotonic() + 8
            end: dict[str, Any] | None = None

            async def read_until_end() -> None:
                nonlocal end
                end = await until(reader, lambda data: data["type"] == "end", 8)

            task = asyncio.create_task(read_until_end())
            while not task.done() and time.monotonic() < deadline:
                await writer.post("/api/agents/chatty/logs", json="tick")
                await asyncio.sleep(0.05)
            await task
    assert end is not None and end["reason"] == "token_expired"


async def test_admin_sees_every_users_agents(start_server: ServerFactory) -> None:
    server = await start_server()
    async with server.client("alice") as alice, server.client("bob") as bob:
        await alice.post("/api/agents", json={"id": "a"})
        await bob.post("/api/agents", json={"id": "b"})
    admin = {"Authorization": f"Bearer {make_token('root', scope='admin')}"}
    async with server.client(None) as client, open_stream(client, "/api/agent-events", headers=admin) as reader:
        assert sorted(ids(await next_data(reader))) == ["a", "b"]
