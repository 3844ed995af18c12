"""Both seed wire formats, read the way their existing frontends read them.

Seed 000's `useAgentLogs` hook appends each event's `logs` and closes on `final`; seed 001's dashboard opens
`/api/v1/stream-logs/request/{request_id}` with no credentials and keeps `data` of every `type: "log"` event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from conftest import Event, RunningServer, ServerFactory, SSEReader, make_token, open_stream

SEED001_DATA_KEYS = {"level", "message", "source", "request_id", "timestamp", "log_source"}


def seed001_path(request_id: str) -> str:
    return f"/api/v1/stream-logs/request/{request_id}"


def publisher_payload(request_id: str, msg: str, **extra: Any) -> dict[str, Any]:
    """What seed 001's agent publishes for one log record."""
    return {
        "agent_name": "browser agent",
        "msg": msg,
        "request_id": request_id,
        "timestamp": 1695307200.123,
        "source": "logger",
        **extra,
    }


async def publish(client: httpx.AsyncClient, request_id: str, body: Any) -> None:
    response = await client.post(f"/api/agents/{request_id}/logs", json=body)
    assert response.status_code == 200, response.text


async def next_non_heartbeat(stream: SSEReader) -> Event | None:
    """The next event that is not a heartbeat (the dashboard ignores those)."""
    for _ in range(100):
        event = await stream.next()
        if event is None or event.json()["type"] != "heartbeat":
            return event
    raise AssertionError("only heartbeats")


async def local_server(start_server: ServerFactory, **settings: Any) -> RunningServer:
    return await start_server(**{"auth.mode": "none", **settings})


async def test_dashboard_connected_before_the_agent_exists_gets_its_log_events(start_server: ServerFactory) -> None:
    server = await local_server(start_server)
    request_id = str(uuid.uuid4())
    async with (
        server.client(None) as dashboard,
        server.client(None) as agent,
        open_stream(dashboard, seed001_path(request_id)) as stream,
    ):
        assert stream.response.status_code == 200
        await publish(agent, request_id, publisher_payload(request_id, "📍 Step 1: Navigate to google.com"))
        await publish(
            agent,
            request_id,
            [publisher_payload(request_id, "Step 2"), publisher_payload(request_id, "oops", levelname="error")],
        )
        events = [await next_non_heartbeat(stream) for _ in range(3)]
    logs = []
    for event in events:
        assert event is not None and event.event is None
        message = event.json()
        assert set(message) == {"type", "data", "timestamp", "channel"}
        assert message["type"] == "log"
        assert message["channel"] == f"browser_use_logs:{request_id}"
        assert set(message["data"]) >= SEED001_DATA_KEYS
        assert message["timestamp"] == message["data"]["timestamp"]
        logs.append(message["data"])
    assert [entry["message"] for entry in logs] == ["📍 Step 1: Navigate to google.com", "Step 2", "oops"]
    assert [entry["level"] for entry in logs] == ["INFO", "INFO", "ERROR"]
    assert {entry["source"] for entry in logs} == {"browser agent"}
    assert {entry["log_source"] for entry in logs} == {"logger"}
    assert {entry["request_id"] for entry in logs} == {request_id}
    assert {entry["timestamp"] for entry in logs} == {"2023-09-21T14:40:00.123Z"}
    assert [event.id for event in events if event is not None] == ["1", "2", "3"]


async def test_seed001_source_is_the_publishers_agent_name_even_for_a_precreated_agent(
    start_server: ServerFactory,
) -> None:
    server = await local_server(start_server)
    async with server.client(None) as client:
        assert (await client.post("/api/agents", json={"id": "pre"})).status_code == 201
        await publish(client, "pre", publisher_payload("pre", "named by the publisher"))
        await publish(client, "pre", {"message": "no agent_name given"})
        async with open_stream(client, seed001_path("pre")) as stream:
            first, second = await next_non_heartbeat(stream), await next_non_heartbeat(stream)
    assert first is not None and first.json()["data"]["source"] == "browser agent"
    assert second is not None and second.json()["data"]["source"] == "pre"


async def test_seed001_timestamps_are_iso_8601_in_utc(start_server: ServerFactory) -> None:
    server = await local_server(start_server)
    async with server.client(None) as client:
        await publish(client, "iso", publisher_payload("iso", "given as ISO", timestamp="2025-09-21T10:30:00.000Z"))
        await publish(client, "iso", {"message": "no timestamp"})
        async with open_stream(client, seed001_path("iso")) as stream:
            first, second = await next_non_heartbeat(stream), await next_non_heartbeat(stream)
    assert first is not None and second is not None
    assert first.json()["data"]["timestamp"] == "2025-09-21T10:30:00.000Z"
    stamp = second.json()["data"]["timestamp"]
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - datetime.now().timestamp()) < 60


async def test_seed001_multiline_message_is_one_event(start_server: ServerFactory) -> None:
    server = await local_server(start_server)
    async with server.client(None) as client:
        await publish(client, "ml", publisher_payload("ml", "Traceback:\n  line 1\n  line 2"))
        async with open_stream(client, seed001_path("ml")) as stream:
            event = await next_non_heartbeat(stream)
    assert event is not None
    assert event.json()["data"]["message"] == "Traceback:\n  line 1\n  line 2"


async def test_seed001_idle_stream_sends_heartbeat_events(start_server: ServerFactory) -> None:
    server = await local_server(start_server, **{"streams.heartbeat": "200ms"})
    async with server.client(None) as dashboard, open_stream(dashboard, seed001_path("hb")) as stream:
        event = await stream.next(timeout=3)
    assert event is not None and event.event is None  # onmessage sees it, and skips it: type is not "log"
    message = event.json()
    assert message["type"] == "heartbeat"


async def test_seed001_finish_sends_end_event_then_closes(start_server: ServerFactory) -> None:
    server = await local_server(start_server)
    async with server.client(None) as client:
        await publish(client, "end", publisher_payload("end", "working"))
        async with open_stream(client, seed001_path("end")) as stream:
            first = await next_non_heartbeat(stream)
            await publish(client, "end", publisher_payload("end", "last words"))
            response = await client.patch("/api/agents/end", json={"status": "failed"})
            assert response.status_code == 200
            rest = await stream.collect_until_closed()
    assert first is not None
    messages = [event.json() for event in [first, *rest] if event.json()["type"] != "heartbeat"]
    assert [m["data"]["message"] for m in messages if m["type"] == "log"] == ["working", "last words"]
    assert messages[-1]["type"] == "end"
    assert messages[-1]["status"] == "failed"
    assert [m["type"] for m in messages].count("end") == 1


async def test_seed001_resumes_after_last_event_id_and_answers_204_when_done(start_server: ServerFactory) -> None:
    server = await local_server(start_server)
    async with server.client(None) as client:
        await publish(client, "res", [publisher_payload("res", f"step {n}") for n in range(1, 6)])
        async with open_stream(client, seed001_path("res"), headers={"Last-Event-ID": "3"}) as stream:
            events = [await next_non_heartbeat(stream), await next_non_heartbeat(stream)]
        assert [e.json()["data"]["message"] for e in events if e is not None] == ["step 4", "step 5"]
        assert (await client.patch("/api/agents/res", json={"status": "completed"})).status_code == 200
        async with open_stream(client, seed001_path("res"), headers={"Last-Event-ID": "4"}) as stream:
            rest = await stream.collect_until_closed()
        assert [e.json()["type"] for e in rest] == ["log", "end"]
        async with open_stream(client, seed001_path("res"), headers={"Last-Event-ID": "5"}) as stream:
            assert stream.response.status_code == 204


async def test_seed001_route_takes_a_token_when_auth_is_on(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client(None) as dashboard:
        await publish(alice, "authed", publisher_payload("authed", "secret step"))
        assert (await dashboard.get(seed001_path("authed"))).status_code == 401
        async with open_stream(dashboard, seed001_path("authed"), token=server.token("alice")) as stream:
            event = await next_non_heartbeat(stream)
        assert event is not None and event.json()["data"]["message"] == "secret step"
        async with server.client("bob") as bob:
            assert (await bob.get(seed001_path("authed"))).status_code == 403


async def test_waiting_dashboard_does_not_see_an_agent_another_user_creates(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        async with open_stream(bob, seed001_path("contested")) as stream:
            assert stream.response.status_code == 200
            await publish(alice, "contested", publisher_payload("contested", "alice's private step"))
            events = await stream.collect_until_closed(timeout=5)
        assert [e for e in events if e.json()["type"] == "log"] == []
        assert (await bob.get(seed001_path("contested"))).status_code == 403


class AgentLogsHook:
    """The state seed 000's useAgentLogs keeps: the text so far, the status and whether it is connected."""

    def __init__(self) -> None:
        self.logs = ""
        self.status: str | None = None
        self.updates = 0

    def on_message(self, event: Event) -> bool:
        """Apply one event; True when the hook closes the EventSource (the final event)."""
        data = event.json()
        self.logs += data["logs"]
        self.status = data["status"]
        self.updates += 1
        return bool(data.get("final"))


async def test_seed000_hook_shows_the_whole_text_and_stops_on_final(server: RunningServer) -> None:
    hook = AgentLogsHook()
    async with server.client("alice") as alice:
        await publish(alice, "hook", [{"message": "Starting"}, {"message": "multi\nline"}])
        path = "/api/agents/hook/logs/stream"
        async with open_stream(alice, path, token=server.token("alice")) as stream:
            first = await stream.next()
            assert first is not None and not hook.on_message(first)
            assert hook.status == "running"
            appended = await alice.post(
                "/api/agents/hook/logs",
                content="plain text\nfrom appendAgentLogs",
                headers={"Content-Type": "text/plain"},
            )
            assert appended.status_code == 200
            await asyncio.sleep(0.05)
            assert (await alice.patch("/api/agents/hook", json={"status": "completed"})).status_code == 200
            closed = False
            while not closed:
                event = await stream.next()
                assert event is not None, "the server closed before the final event"
                closed = hook.on_message(event)
                last_id = event.id
        assert hook.logs == "Starting\nmulti\nline\nplain text\nfrom appendAgentLogs\n"
        assert hook.status == "completed"
        # EventSource reconnects after a close; the 204 makes it stop for good.
        async with open_stream(alice, path, headers={"Last-Event-ID": last_id or ""}) as stream:
            assert stream.response.status_code == 204


@pytest.mark.slow  # waits for a token to expire
async def test_seed001_stream_ends_with_end_event_when_the_token_expires(server: RunningServer) -> None:
    short = make_token("alice", exp=int(time.time()) + 2)
    async with server.client("alice") as alice, server.client(None) as dashboard:
        await publish(alice, "short", publisher_payload("short", "visible"))
        async with open_stream(dashboard, seed001_path("short"), token=short) as stream:
            assert stream.response.status_code == 200
            events = await stream.collect_until_closed(timeout=8)
    messages = [event.json() for event in events if event.json()["type"] != "heartbeat"]
    assert [m["type"] for m in messages] == ["log", "end"]
    assert messages[-1]["reason"] == "token_expired"
