"""Webhooks across processes, started as the README says: a delivery pending when a server is killed arrives after
its restart, and two processes on one PostgreSQL database and one Redis deliver each event once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from processes import ServerProcess, free_port, write_config
from webhook_receiver import Receiver

pytestmark = pytest.mark.slow  # server children, PostgreSQL and Redis

LOOPBACK = {"allowed_targets": ["127.0.0.1"]}


def register(server: ServerProcess, url: str, events: list[str], **fields: Any) -> dict[str, Any]:
    """Register alice's webhook on `server`; its answer."""
    response = server.send("POST", "/api/webhooks", {"url": url, "events": events, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def fail_agent(server: ServerProcess, agent_id: str) -> None:
    """A run of alice's with one line, then failed."""
    assert server.send("POST", f"/api/agents/{agent_id}/logs", {"message": "working"}).status_code == 200
    assert server.send("PATCH", f"/api/agents/{agent_id}", {"status": "failed", "reason": "crash"}).status_code == 200


async def test_a_delivery_pending_at_kill_9_arrives_after_restart(tmp_path: Path) -> None:
    server = ServerProcess.in_folder(tmp_path, webhooks=LOOPBACK).start()
    try:
        receiver = Receiver()
        receiver.port = free_port()  # nothing listens there yet: every attempt before the restart is refused
        hook = register(server, receiver.url, ["agent.failed"])
        fail_agent(server, "run-1")
        server.kill()
        async with receiver:
            started = time.monotonic()
            server.start()
            (request,) = await receiver.wait_for(1, timeout=15)
            assert time.monotonic() - started < 10
            event = standardwebhooks.Webhook(hook["secret"]).verify(request.body, request.headers)
            assert (event["type"], event["data"]["agent"]["id"]) == ("agent.failed", "run-1")
            await asyncio.sleep(1.5)
            assert len(receiver.received) == 1
    finally:
        server.terminate()


@pytest.fixture
def scale_out_config(tmp_path: Path, pg_url: str, redis_url: str, bus_prefix: str) -> Path:
    """The shared `pair`'s sentra.toml, with webhooks that may reach the loopback receiver."""
    return write_config(
        tmp_path,
        storage={"url": pg_url},
        bus={"url": redis_url, "prefix": bus_prefix},
        webhooks={**LOOPBACK, "match_window": "1s"},
    )


async def test_two_processes_on_postgresql_deliver_each_event_once(pair: list[ServerProcess]) -> None:
    a, b = pair
    async with Receiver() as receiver:
        hook = register(a, receiver.url, ["agent.failed", "lines.matched"], contains="boom")
        # Both processes read the lines.matched webhooks every 2 s: past that, lines on either one trigger it.
        await asyncio.sleep(2.5)
        runs = {f"run-{n}": (a, b)[n % 2] for n in range(12)}
        for agent_id, server in runs.items():
            await asyncio.to_thread(fail_agent, server, agent_id)
        for server, agent_id in ((a, "loud-a"), (b, "loud-b")):
            response = server.send("POST", f"/api/agents/{agent_id}/logs", [{"message": "boom"}, {"message": "boom!"}])
            assert response.status_code == 200
        await receiver.wait_for(len(runs) + 2, timeout=20)
        await asyncio.sleep(3)  # any second delivery would have come by now: the next poll is 0.5 s away
        events = [standardwebhooks.Webhook(hook["secret"]).verify(r.body, r.headers) for r in receiver.received]
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == len(set(ids)) == len(runs) + 2
        failed = sorted(e["data"]["agent"]["id"] for e in events if e["type"] == "agent.failed")
        assert failed == sorted(runs)
        matched = {e["data"]["agent"]["id"]: e["data"]["count"] for e in events if e["type"] == "lines.matched"}
        assert matched == {"loud-a": 2, "loud-b": 2}
        # Both processes list the same deliveries: each recorded once.
        for server in (a, b):
            deliveries = server.get(f"/api/webhooks/{hook['id']}/deliveries")["deliveries"]
            assert sorted(d["id"] for d in deliveries) == sorted(ids)
