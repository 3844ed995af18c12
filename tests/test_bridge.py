"""The seed 001 bridge against a real redis-server: what agents PUBLISH reaches Sentra's streams, stored once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import RunningServer, ServerFactory, open_stream
from redis_service import RedisServer

from sentra.bridge import LOCK_TTL_MS


@pytest.fixture
async def publisher(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A Redis client playing seed 001's agents."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> float:
    """Poll `check` until it holds; returns the seconds it took, fails after `timeout`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def subscribed_bridges(publisher: aioredis.Redis, count: int = 1) -> float:
    """Wait until exactly `count` bridges listen on Redis (pub/sub keeps nothing for late subscribers)."""

    async def ready() -> bool:
        clients = await publisher.client_list()
        return sum(1 for client in clients if int(client["psub"]) > 0) == count

    return await until(ready)


def seed001_record(request_id: str, msg: str) -> str:
    """A message exactly as seed 001's publisher writes it."""
    record = {"agent_name": "browser agent", "msg": msg, "request_id": request_id, "timestamp": 1695307200.123}
    return json.dumps({**record, "source": "logger"})


async def start_bridge(start_server: ServerFactory, redis_url: str, bus_prefix: str, **extra: Any) -> RunningServer:
    """A Sentra server whose bridge ingests browser_use_logs:* as alice."""
    settings = {"bridge.redis_url": redis_url, "bridge.owner": "alice", "bus.prefix": bus_prefix, **extra}
    return await start_server(**settings)


async def stored_messages(server: RunningServer, agent_id: str) -> list[str]:
    """The messages of `agent_id` stored by `server` (none if it has no such agent)."""
    async with server.client("alice") as client:
        response = await client.get(f"/api/agents/{agent_id}/logs")
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        return [line["message"] for line in response.json()["lines"]]


async def test_published_record_reaches_a_stream_subscriber(
    start_server: ServerFactory, redis_url: str, bus_prefix: str, publisher: aioredis.Redis
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    request_id = f"req-{uuid.uuid4()}"
    async with (
        server.client("alice") as client,
        open_stream(client, f"/api/v1/stream-logs/request/{request_id}") as stream,
    ):
        assert stream.response.status_code == 200
        await publisher.publish(f"browser_use_logs:{request_id}", seed001_record(request_id, "📍 Step 1: Navigate"))
        event = await stream.next(timeout=10)
        while event is not None and event.json()["type"] != "log":
            event = await stream.next(timeout=10)
    assert event is not None
    data = event.json()["data"]
    assert data["message"] == "📍 Step 1: Navigate"
    assert data["request_id"] == request_id
    assert data["source"] == "browser agent" and data["log_source"] == "logger"
    assert data["timestamp"].startswith("2023-09-21T14:40:00.123")
    async with server.client("alice") as client:
        agent = (await client.get(f"/api/agents/{request_id}")).json()
    assert agent["owner"] == "alice"


async def test_plain_text_and_sse_envelopes_become_lines_in_order(
    start_server: ServerFactory, redis_url: str, bus_prefix: str, publisher: aioredis.Redis
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    channel = "browser_use_logs:plain-1"
    envelope = {"type": "log", "data": {"level": "ERROR", "message": "boom", "source": "browser-agent"}}
    async with publisher.pipeline(transaction=False) as pipe:
        pipe.publish(channel, "just some text")
        pipe.publish(channel, json.dumps(envelope))
        pipe.publish(channel, '{"not": "a log record"}')
        for i in range(200):
            pipe.publish(channel, f"burst {i}")
        await pipe.execute()

    async def all_stored() -> bool:
        return len(await stored_messages(server, "plain-1")) == 203

    await until(all_stored)
    async with server.client("alice") as client:
        lines = (await client.get("/api/agents/plain-1/logs")).json()["lines"]
    assert [line["seq"] for line in lines] == list(range(1, 204))
    assert [line["message"] for line in lines[:3]] == ["just some text", "boom", '{"not": "a log record"}']
    assert (lines[1]["level"], lines[1]["source"]) == ("ERROR", "browser-agent")
    assert [line["message"] for line in lines[3:]] == [f"burst {i}" for i in range(200)]


async def test_two_bridges_on_one_redis_store_each_message_once(
    start_server: ServerFactory, redis_url: str, bus_prefix: str, publisher: aioredis.Redis
) -> None:
    first = await start_bridge(start_server, redis_url, bus_prefix)
    second = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    await asyncio.sleep(2 * 1.5)  # the other bridge has polled for the lock and stayed out
    await subscribed_bridges(publisher)
    for i in range(20):
        await publisher.publish("browser_use_logs:once", f"line {i}")

    async def all_stored() -> bool:
        return len(await stored_messages(first, "once")) + len(await stored_messages(second, "once")) >= 20

    await until(all_stored)
    await asyncio.sleep(0.5)
    stored = [await stored_messages(first, "once"), await stored_messages(second, "once")]
    assert sorted(len(messages) for messages in stored) == [0, 20]
    leader, follower = (first, second) if stored[0] else (second, first)
    # A clean shutdown releases the lock: the other bridge takes over well before it would expire.
    await leader.shutdown()
    took = await subscribed_bridges(publisher)
    assert took < LOCK_TTL_MS / 1000
    await publisher.publish("browser_use_logs:once", "after the take-over")

    async def taken_over() -> bool:
        return await stored_messages(follower, "once") == ["after the take-over"]

    await until(taken_over)


async def test_a_bad_channel_suffix_is_skipped_with_one_warning(
    start_server: ServerFactory,
    redis_url: str,
    bus_prefix: str,
    publisher: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    with caplog.at_level(logging.WARNING, logger="sentra.bridge"):
        for _ in range(3):
            await publisher.publish("browser_use_logs:no spaces allowed", "lost")
        await publisher.publish("browser_use_logs:", "no id at all")
        await publisher.publish("browser_use_logs:good-1", "kept")

        async def kept() -> bool:
            return await stored_messages(server, "good-1") == ["kept"]

        await until(kept)
    warnings = [record.getMessage() for record in caplog.records if record.name == "sentra.bridge"]
    assert len(warnings) == 2, warnings
    assert "no spaces allowed" in warnings[0] and "invalid agent id" in warnings[0]


async def test_bridge_ingests_again_after_redis_restarts(
    start_server: ServerFactory, own_redis: RedisServer, bus_prefix: str
) -> None:
    server = await start_bridge(start_server, own_redis.url, bus_prefix)
    publisher = aioredis.Redis.from_url(own_redis.url)
    try:
        await subscribed_bridges(publisher)
        await publisher.publish("browser_use_logs:restart-1", "before")

        async def stored(expected: list[str]) -> bool:
            return await stored_messages(server, "restart-1") == expected

        await until(lambda: stored(["before"]))
        own_redis.restart()
        await publisher.aclose()
        publisher = aioredis.Redis.from_url(own_redis.url)
        await subscribed_bridges(publisher)
        assert await publisher.publish("browser_use_logs:restart-1", "after") == 1
        await until(lambda: stored(["before", "after"]))
    finally:
        await publisher.aclose()
