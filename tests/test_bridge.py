"""The seed 001 bridge against a real redis-server: what agents PUBLISH reaches Sentra's streams, stored once,
owned on default settings by the user of the token Sentra prints, and ended by an end message."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import RunningServer, ServerFactory, open_stream
from processes import ServerProcess, write_config
from redis_service import RedisServer

from sentra.bridge import LOCK_TTL_MS, RENEW_EVERY

pytestmark = pytest.mark.slow  # Redis, and server children

# On default settings bridged agents belong to whoever runs Sentra: the user its printed token is for.
LOCAL_USER = getpass.getuser()
STEADY_FOR = 0.2


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
    """Wait until exactly `count` bridges listen on Redis (pub/sub keeps nothing for late subscribers), the same
    ones for STEADY_FOR: a bridge starting over after Redis restarted may show a subscription for an instant
    (redis-py re-subscribes a failing one as it reconnects, before the bridge closes it)."""
    listening: set[str] = set()
    since = time.monotonic()

    async def ready() -> bool:
        nonlocal listening, since
        clients = await publisher.client_list()
        now = {client["id"] for client in clients if int(client["psub"]) > 0}
        if now != listening:
            listening, since = now, time.monotonic()
        return len(listening) == count and time.monotonic() - since >= STEADY_FOR

    return await until(ready)


def seed001_record(request_id: str, msg: str) -> str:
    """A message exactly as seed 001's publisher writes it."""
    record = {"agent_name": "browser agent", "msg": msg, "request_id": request_id, "timestamp": 1695307200.123}
    return json.dumps({**record, "source": "logger"})


async def start_bridge(start_server: ServerFactory, redis_url: str, bus_prefix: str, **extra: Any) -> RunningServer:
    """A Sentra server whose bridge ingests browser_use_logs:*, with no bridge setting but the Redis URL."""
    settings = {"bridge.redis_url": redis_url, "bus.prefix": bus_prefix, **extra}
    return await start_server(**settings)


async def stored_messages(server: RunningServer, agent_id: str, user: str = LOCAL_USER) -> list[str]:
    """The messages of `agent_id` stored by `server` (none if it has no such agent)."""
    async with server.client(user) as client:
        response = await client.get(f"/api/agents/{agent_id}/logs")
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        return [line["message"] for line in response.json()["lines"]]


def end_message(request_id: str, **fields: str) -> str:
    """The end of a run, with the keys seed 001's publisher puts in every message."""
    return json.dumps({"type": "end", "agent_name": "browser agent", "request_id": request_id, **fields})


async def test_published_record_reaches_a_stream_subscriber_of_the_configured_owner(
    start_server: ServerFactory, redis_url: str, bus_prefix: str, publisher: aioredis.Redis
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix, **{"bridge.owner": "alice"})
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
    async with server.client(LOCAL_USER) as client:
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


def printed_token(process: ServerProcess) -> str:
    """The token a `python server.py` on loopback prints at start-up."""
    opening = [line for line in process.banner if line.startswith("Open http")]
    assert len(opening) == 1, process.banner
    return opening[0].split("?token=", 1)[1]


def start_bridge_process(directory: Path, redis_url: str, name: str) -> ServerProcess:
    """`python server.py` with a database of its own and no setting but bridge.redis_url (and the test secret)."""
    folder = directory / name
    folder.mkdir()
    return ServerProcess(folder / "sentra.db", config=write_config(folder, bridge={"redis_url": redis_url})).start()


async def test_on_defaults_bridged_agents_are_read_with_the_printed_token(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    process = start_bridge_process(tmp_path, own_redis.url, "one")
    publisher = aioredis.Redis.from_url(own_redis.url)
    try:
        await subscribed_bridges(publisher)
        request_id = f"req-{uuid.uuid4()}"
        for step in ("📍 Step 1: Navigate", "📍 Step 2: Search"):
            await publisher.publish(f"browser_use_logs:{request_id}", seed001_record(request_id, step))
        headers = {"Authorization": f"Bearer {printed_token(process)}"}
        async with httpx.AsyncClient(base_url=process.url, headers=headers, timeout=10.0) as client:

            async def both_stored() -> bool:
                response = await client.get(f"/api/agents/{request_id}/logs")
                return response.status_code == 200 and len(response.json()["lines"]) == 2

            await until(both_stored)
            listed = (await client.get("/api/agents")).json()["agents"]
            logs = (await client.get(f"/api/agents/{request_id}/logs")).json()["lines"]
    finally:
        await publisher.aclose()
        process.terminate()
    assert [(agent["id"], agent["owner"]) for agent in listed] == [(request_id, LOCAL_USER)]
    assert [line["message"] for line in logs] == ["📍 Step 1: Navigate", "📍 Step 2: Search"]


async def test_an_end_message_finishes_the_agent_after_the_lines_before_it(
    start_server: ServerFactory, redis_url: str, bus_prefix: str, publisher: aioredis.Redis
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    request_id = f"req-{uuid.uuid4()}"
    channel = f"browser_use_logs:{request_id}"
    await publisher.publish(channel, seed001_record(request_id, "step 0"))
    await until(lambda: stored_equals(server, request_id, ["step 0"]))
    async with (
        server.client(LOCAL_USER) as client,
        open_stream(client, f"/api/v1/stream-logs/request/{request_id}") as dashboard,
        open_stream(client, f"/api/agents/{request_id}/logs/stream") as follower,
    ):
        assert (dashboard.response.status_code, follower.response.status_code) == (200, 200)
        # Lines and the end in one go: they reach the bridge together, and the end must wait for the lines.
        async with publisher.pipeline(transaction=False) as pipe:
            for i in range(1, 51):
                pipe.publish(channel, seed001_record(request_id, f"step {i}"))
            pipe.publish(channel, end_message(request_id))
            await pipe.execute()
        seed001_events = [event.json() for event in await dashboard.collect_until_closed()]
        seed000_events = [event.json() for event in await follower.collect_until_closed()]
        agent = (await client.get(f"/api/agents/{request_id}")).json()
    steps = [f"step {i}" for i in range(51)]
    logs = [event for event in seed001_events if event["type"] == "log"]
    assert [event["data"]["message"] for event in logs] == steps
    assert seed001_events[-1] == {"type": "end", "status": "completed", "request_id": request_id}
    assert "".join(event["logs"] for event in seed000_events) == "".join(f"{step}\n" for step in steps)
    assert seed000_events[-1]["final"] is True and seed000_events[-1]["status"] == "completed"
    assert (agent["status"], agent["reason"]) == ("completed", None)
    assert await stored_messages(server, request_id) == steps


async def test_an_end_message_can_fail_the_run_with_a_reason(
    start_server: ServerFactory, redis_url: str, bus_prefix: str, publisher: aioredis.Redis
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    request_id = f"req-{uuid.uuid4()}"
    channel = f"browser_use_logs:{request_id}"
    async with (
        server.client(LOCAL_USER) as client,
        open_stream(client, f"/api/v1/stream-logs/request/{request_id}") as dashboard,
    ):
        await publisher.publish(channel, seed001_record(request_id, "📄 Result: upload failed"))
        await publisher.publish(channel, end_message(request_id, status="failed", reason="upload failed"))
        events = [event.json() for event in await dashboard.collect_until_closed()]
        agent = (await client.get(f"/api/agents/{request_id}")).json()
    assert [event["type"] for event in events if event["type"] != "heartbeat"] == ["log", "end"]
    assert events[-1] == {"type": "end", "status": "failed", "request_id": request_id, "reason": "upload failed"}
    assert (agent["status"], agent["reason"], agent["last_seq"]) == ("failed", "upload failed", 1)


async def test_bad_end_messages_are_skipped_with_one_warning_per_channel(
    start_server: ServerFactory,
    redis_url: str,
    bus_prefix: str,
    publisher: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await start_bridge(start_server, redis_url, bus_prefix)
    await subscribed_bridges(publisher)
    async with server.client("bob") as bob:
        assert (await bob.post("/api/agents", json={"id": "bobs-run"})).status_code == 201
    with caplog.at_level(logging.WARNING, logger="sentra.bridge"):
        await publisher.publish("browser_use_logs:kept-2", "working")
        await until(lambda: stored_equals(server, "kept-2", ["working"]))
        for _ in range(2):
            await publisher.publish("browser_use_logs:ghost", end_message("ghost"))
            await publisher.publish("browser_use_logs:bobs-run", end_message("bobs-run"))
            await publisher.publish("browser_use_logs:kept-2", end_message("kept-2", status="paused"))
        await publisher.publish("browser_use_logs:kept-2", end_message("kept-2"))

        async def ended() -> bool:
            async with server.client(LOCAL_USER) as client:
                return bool((await client.get("/api/agents/kept-2")).json()["status"] == "completed")

        await until(ended)
    warnings = sorted(record.getMessage() for record in caplog.records if record.name == "sentra.bridge")
    assert len(warnings) == 3, warnings
    assert "browser_use_logs:bobs-run" in warnings[0] and "no agent 'bobs-run'" in warnings[0]
    assert "browser_use_logs:ghost" in warnings[1] and "no agent 'ghost'" in warnings[1]
    assert "browser_use_logs:kept-2" in warnings[2] and "'status' must be completed or failed" in warnings[2]
    assert await stored_messages(server, "kept-2") == ["working"]
    async with server.client("bob") as bob:
        assert (await bob.get("/api/agents/bobs-run")).json()["status"] == "running"
    async with server.client(LOCAL_USER) as client:
        assert (await client.get("/api/agents/ghost")).status_code == 404


async def stored_equals(server: RunningServer, agent_id: str, expected: list[str]) -> bool:
    """True once `server` has stored exactly `expected` for `agent_id`."""
    return await stored_messages(server, agent_id) == expected


async def takes_over(
    tmp_path: Path, redis: RedisServer, stop_leader: Callable[[ServerProcess], object]
) -> tuple[float, list[str], ServerProcess]:
    """Start a leader and a second process on one Redis, stop the leader with `stop_leader`, and return the seconds
    until the second one ingests, the second one's log lines about the leader, and the stopped leader."""
    publisher = aioredis.Redis.from_url(redis.url)
    leader = start_bridge_process(tmp_path, redis.url, "leader")
    follower: ServerProcess | None = None
    try:
        await subscribed_bridges(publisher)
        follower = start_bridge_process(tmp_path, redis.url, "follower")
        await asyncio.sleep(3 * RENEW_EVERY)  # the second process has asked for the lock, in vain, several times
        await subscribed_bridges(publisher)
        stop_leader(leader)
        took = await subscribed_bridges(publisher)
        await publisher.publish("browser_use_logs:after-1", "after the take-over")
        headers = {"Authorization": f"Bearer {printed_token(follower)}"}
        async with httpx.AsyncClient(base_url=follower.url, headers=headers, timeout=10.0) as client:

            async def ingested() -> bool:
                response = await client.get("/api/agents/after-1/logs")
                return response.status_code == 200 and len(response.json()["lines"]) == 1

            await until(ingested)
    finally:
        await publisher.aclose()
        if leader.process.poll() is None:
            leader.kill()
        if follower is not None:
            follower.terminate()
    assert follower is not None
    said = [line for line in follower.stderr.splitlines() if "sentra.bridge" in line and "another process" in line]
    return took, said, leader


async def test_a_second_process_says_once_it_waits_and_takes_over_when_the_leader_shuts_down(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    took, said, leader = await takes_over(tmp_path, own_redis, lambda process: process.terminate())
    # A clean shutdown releases the lock: the next poll takes it, well before the lock would have expired.
    assert took < LOCK_TTL_MS / 1000
    assert len(said) == 1, said
    assert f"pid {leader.process.pid} " in said[0] and "takes over if it goes away" in said[0]


async def test_a_second_process_takes_over_once_a_killed_leaders_lock_expires(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    took, said, leader = await takes_over(tmp_path, own_redis, lambda process: process.kill())
    # kill -9 leaves the lock in Redis until it expires; the next poll after that takes it.
    assert took < LOCK_TTL_MS / 1000 + RENEW_EVERY + 2
    assert len(said) == 1, said
    assert f"pid {leader.process.pid} " in said[0]
