"""RedisBus against a real redis-server: two 'processes' (bus, registry and SQLite store each) in one loop."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis_service import RedisServer

from sentra.bus import redis_bus
from sentra.bus.redis_bus import RedisBus
from sentra.lines import Line, NewLine
from sentra.registry import AgentUpdate, Item, Resync, Subscription, TopicRegistry
from sentra.storage.sqlite import Store

pytestmark = pytest.mark.slow  # Redis


@dataclass
class Node:
    """What one Sentra process contributes: its store, registry and bus."""

    store: Store
    registry: TopicRegistry
    bus: RedisBus

    def watch(self, agent_id: str) -> Subscription:
        """A subscription to one agent in this node's registry."""
        sub = Subscription("alice", agent_ids={agent_id})
        self.registry.subscribe(sub)
        return sub

    async def ingest(self, agent_id: str, *messages: str) -> None:
        """Commit lines through this node's store, which tells its bus."""
        lines = [NewLine(time.time(), "INFO", message, "test", {"n": i}) for i, message in enumerate(messages)]
        await self.store.append_lines(agent_id, "alice", lines)


async def start_node(directory: Path, name: str, url: str, prefix: str) -> Node:
    """Open a store, start a bus on it and make the bus the store's listener."""
    store = Store(directory / f"{name}.db")
    await store.open()
    registry = TopicRegistry()
    bus = RedisBus(url, registry, store, prefix=prefix)
    await bus.start()
    store.listener = bus
    return Node(store, registry, bus)


async def stop_node(node: Node) -> None:
    """Close the store, then the bus, as serve() does."""
    await node.store.close()
    await node.bus.close()


@pytest.fixture
async def nodes(tmp_path: Path, redis_url: str, bus_prefix: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on the session's Redis with this test's prefix."""
    a = await start_node(tmp_path, "a", redis_url, bus_prefix)
    b = await start_node(tmp_path, "b", redis_url, bus_prefix)
    yield a, b
    await stop_node(a)
    await stop_node(b)


async def collect(sub: Subscription, done: Callable[[list[Item]], bool], timeout: float = 5.0) -> list[Item]:
    """Items of `sub` until `done(items)` holds; fails after `timeout` seconds."""
    items: list[Item] = []
    deadline = time.monotonic() + timeout
    while not done(items):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {items!r}"
        await sub.wait(left)
        items += sub.take()
    return items


def lines_of(items: list[Item]) -> list[Line]:
    """The Line items."""
    return [item for item in items if isinstance(item, Line)]


def count_lines(n: int) -> Callable[[list[Item]], bool]:
    """Done once `n` lines arrived."""
    return lambda items: len(lines_of(items)) >= n


async def test_commit_on_one_process_reaches_a_subscriber_on_another(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sub = b.watch("job-1")
    await a.ingest("job-1", "one", "two", "three")
    items = await collect(sub, count_lines(3))
    lines = lines_of(items)
    assert [(line.seq, line.message, line.fields) for line in lines] == [
        (1, "one", {"n": 0}),
        (2, "two", {"n": 1}),
        (3, "three", {"n": 2}),
    ]
    assert all(line.agent == "job-1" and line.source == "test" and line.level == "INFO" for line in lines)
    created = [item for item in items if isinstance(item, AgentUpdate)]
    assert created and created[0].agent.owner == "alice" and created[0].agent.status == "running"
    # B's storage heard of the newer agent record, so its readers know where the sequence stands.
    cached = b.store.cached_agent("job-1")
    assert cached is not None and cached.last_seq == 3 and cached.pk == created[0].agent.pk


async def test_own_commits_are_delivered_once(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    mine, theirs, marker = a.watch("job-1"), b.watch("job-1"), a.watch("job-2")
    await a.ingest("job-1", "one")
    await a.ingest("job-1", "two")
    await collect(theirs, count_lines(2))
    # One channel keeps order: once B's later commit reaches A, A's own messages have come back to it too.
    await b.ingest("job-2", "marker")
    await collect(marker, count_lines(1))
    items = mine.take()
    assert [line.seq for line in lines_of(items)] == [1, 2]


async def test_status_changes_and_deletes_cross(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await a.ingest("job-1", "one")
    sub = b.watch("job-1")
    await a.store.update_agent("job-1", status="completed", name=None, labels={"team": "x"}, reason="done")

    def updated(items: list[Item]) -> bool:
        return any(isinstance(item, AgentUpdate) and item.agent.status == "completed" for item in items)

    items = await collect(sub, updated)
    update = [item for item in items if isinstance(item, AgentUpdate)][-1]
    assert (update.agent.reason, update.agent.labels, update.agent.last_seq) == ("done", {"team": "x"}, 1)
    cached = b.store.cached_agent("job-1")
    assert cached is not None and cached.status == "completed"
    await a.store.delete_agent("job-1")
    items = await collect(sub, lambda got: any(isinstance(item, AgentUpdate) and item.deleted for item in got))
    assert [item.agent.id for item in items if isinstance(item, AgentUpdate) and item.deleted] == ["job-1"]


async def test_redis_restart_makes_streams_resync_and_commits_flow_again(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    a = await start_node(tmp_path, "a", own_redis.url, "restart")
    b = await start_node(tmp_path, "b", own_redis.url, "restart")
    try:
        sub = b.watch("job-1")
        await a.ingest("job-1", "before")
        await collect(sub, count_lines(1))
        own_redis.stop()
        # Committed on A while nobody can hear it: B must be told to re-read storage.
        await a.ingest("job-1", "during")
        own_redis.start()
        items = await collect(sub, lambda got: any(isinstance(item, Resync) for item in got), timeout=15)
        assert b.bus.reconnects >= 1
        await a.ingest("job-1", "after")
        items = await collect(sub, lambda got: "after" in [line.message for line in lines_of(got)], timeout=10)
        assert lines_of(items)[-1].seq == 3
    finally:
        await stop_node(a)
        await stop_node(b)


async def test_publishing_while_redis_is_down_neither_blocks_nor_fails(
    tmp_path: Path, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_bus, "MAX_QUEUED", 50)
    a = await start_node(tmp_path, "a", own_redis.url, "down")
    sub = a.watch("job-1")
    own_redis.stop()
    started = time.monotonic()
    for i in range(80):
        await a.ingest("job-1", f"line {i}")
    elapsed = time.monotonic() - started
    # Each line is still delivered in this process at once, and the queue for Redis is bounded.
    assert [line.seq for line in lines_of(sub.take())] == list(range(1, 81))
    assert elapsed < 5, f"80 commits took {elapsed:.1f} s with Redis down"
    assert a.bus.dropped >= 30
    started = time.monotonic()
    await stop_node(a)
    assert time.monotonic() - started < redis_bus.CLOSE_FLUSH_TIMEOUT + 2


async def test_start_refuses_an_unreachable_redis(tmp_path: Path, own_redis: RedisServer) -> None:
    own_redis.stop()
    store = Store(tmp_path / "x.db")
    bus = RedisBus(f"redis://user:secret@127.0.0.1:{own_redis.port}/0", TopicRegistry(), store)
    with pytest.raises(OSError, match=f"127.0.0.1:{own_redis.port}") as caught:
        await bus.start()
    assert "secret" not in str(caught.value)


async def test_events_lost_between_processes_make_streams_resync(nodes: tuple[Node, Node], redis_url: str) -> None:
    _, b = nodes
    sub = b.watch("job-9")
    agent = [1, "job-9", "", "alice", "running", None, {}, 1.0, 1.0, 1.0, 1, 1, None, None]
    other = aioredis.Redis.from_url(redis_url)
    try:
        first = {"o": "elsewhere", "n": 0, "e": [["l", agent, [[1, 1.0, "INFO", "one", "", {}]]]]}
        await other.publish(b.bus.channel, json.dumps(first))
        await collect(sub, count_lines(1))
        # Events 1..4 of that process never arrived (dropped while Redis was unreachable from it).
        agent[11] = 6  # its last_seq
        later = {"o": "elsewhere", "n": 5, "e": [["l", agent, [[6, 2.0, "INFO", "six", "", {}]]]]}
        await other.publish(b.bus.channel, json.dumps(later))
        items = await collect(sub, count_lines(1))
    finally:
        await other.aclose()
    assert isinstance(items[0], Resync)
    assert [line.seq for line in lines_of(items)] == [6]
