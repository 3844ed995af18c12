"""GET /api/agents/{id}/logs/stream: seed 000's SSE stream, parsed as EventSource would parse it."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    make_token,
    messages_of,
    open_stream,
    post_lines,
    seqs_of,
    set_status,
    stream_path,
)

from sentra.storage.sqlite import revoke_token_offline


async def test_replayed_lines_arrive_as_one_unnamed_event_with_last_seq_as_id(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "run", ["one", "two", "three"])
    async with open_stream(alice, stream_path("run")) as stream:
        event = await stream.next()
    assert event is not None
    assert event.event is None  # unnamed, so EventSource.onmessage receives it
    assert event.id == "3"
    data = event.json()
    assert data["logs"] == "one\ntwo\nthree\n"
    assert data["status"] == "running"
    assert "final" not in data
    assert [(line["seq"], line["message"]) for line in data["lines"]] == [(1, "one"), (2, "two"), (3, "three")]
    assert {line["agent"] for line in data["lines"]} == {"run"}


async def test_live_batch_arrives_coalesced_in_one_event(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "live", ["first"])
    async with open_stream(alice, stream_path("live")) as stream:
        assert (await stream.next()) is not None
        await post_lines(alice, "live", ["a", "b", "c", "d"], level="warning", source="stderr")
        event = await stream.next()
    assert event is not None and event.id == "5"
    data = event.json()
    assert data["logs"] == "a\nb\nc\nd\n"
    assert [line["seq"] for line in data["lines"]] == [2, 3, 4, 5]
    assert {(line["level"], line["source"]) for line in data["lines"]} == {("WARNING", "stderr")}


async def test_stream_of_idle_agent_opens_at_once(alice: httpx.AsyncClient) -> None:
    assert (await alice.post("/api/agents", json={"id": "idle"})).status_code == 201

    async def status_of_open_stream() -> int:
        async with open_stream(alice, stream_path("idle")) as stream:
            return stream.response.status_code

    # EventSource reports "connected" only once headers arrive; they must not wait for the first line.
    assert await asyncio.wait_for(status_of_open_stream(), 3.0) == 200


async def test_stream_sends_sse_headers_and_retry_hint(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "hdr", ["x"])
    async with open_stream(alice, stream_path("hdr")) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert (await stream.next()) is not None
        assert stream.retry == 2000  # the default streams.retry of 2 s, in milliseconds


@pytest.mark.slow  # waits for heartbeats
async def test_idle_stream_gets_heartbeat_comments(start_server: ServerFactory) -> None:
    server = await start_server(**{"streams.heartbeat": "200ms"})
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents", json={"id": "quiet"})).status_code == 201
        async with open_stream(alice, stream_path("quiet")) as stream:
            await asyncio.sleep(0.9)
            await post_lines(alice, "quiet", ["after the silence"])
            event = await stream.next()
            assert event is not None and messages_of([event]) == ["after the silence"]
            assert stream.comments.count("heartbeat") >= 2


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_finishing_the_agent_sends_final_event_after_all_lines_then_closes(
    alice: httpx.AsyncClient, status: str
) -> None:
    await post_lines(alice, "fin", ["early"])
    async with open_stream(alice, stream_path("fin")) as stream:
        first = await stream.next()
        assert first is not None
        await post_lines(alice, "fin", ["late 1", "late 2"])
        await set_status(alice, "fin", status)
        rest = await stream.collect_until_closed()
    events = [first, *rest]
    assert messages_of(events) == ["early", "late 1", "late 2"]
    final = events[-1].json()
    assert final["final"] is True
    assert final["status"] == status
    assert isinstance(final["logs"], str) and isinstance(final["lines"], list)
    assert events[-1].id == "3"
    assert all("final" not in event.json() for event in events[:-1])


async def test_finished_agent_gives_history_and_final_event_at_once(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "done", [f"line {n}" for n in range(1, 6)])
    await set_status(alice, "done", "completed")
    async with open_stream(alice, stream_path("done")) as stream:
        events = await stream.collect_until_closed()
    assert len(events) == 1
    data = events[0].json()
    assert data["final"] is True and data["status"] == "completed"
    assert data["logs"] == "".join(f"line {n}\n" for n in range(1, 6))
    assert events[0].id == "5"


async def test_last_event_id_header_wins_over_after_query(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "res", [f"m{n}" for n in range(1, 11)])
    async with open_stream(alice, stream_path("res"), headers={"Last-Event-ID": "7"}, after=2) as stream:
        event = await stream.next()
    assert event is not None and event.id == "10"
    assert seqs_of([event]) == [8, 9, 10]
    async with open_stream(alice, stream_path("res"), after=2) as stream:
        event = await stream.next()
    assert event is not None and seqs_of([event]) == list(range(3, 11))


@pytest.mark.parametrize("resume_with", ["last_event_id", "after"])
async def test_resume_while_lines_arrive_has_no_gap_and_no_duplicate(server: RunningServer, resume_with: str) -> None:
    total, per_request = 2000, 20
    rng = random.Random(resume_with)
    async with server.client("alice") as writer_client, server.client("alice") as reader:
        assert (await writer_client.post("/api/agents", json={"id": "busy"})).status_code == 201

        async def write() -> None:
            for start in range(1, total + 1, per_request):
                await post_lines(writer_client, "busy", [f"m{n}" for n in range(start, start + per_request)])
                await asyncio.sleep(0.003)
            await set_status(writer_client, "busy", "completed")

        writer = asyncio.create_task(write())
        received: list[int] = []
        last_id: str | None = None
        reconnects_while_writing = 0
        ended = False
        deadline = time.monotonic() + 25
        while not ended and time.monotonic() < deadline:
            headers = {"Last-Event-ID": last_id} if resume_with == "last_event_id" and last_id else {}
            params = {"after": last_id} if resume_with == "after" and last_id else {}
            async with open_stream(reader, stream_path("busy"), headers=headers, **params) as stream:
                if stream.response.status_code == 204:
                    break  # finished and nothing new after our last event
                assert stream.response.status_code == 200
                for _ in range(rng.randint(1, 3)):
                    event = await stream.next()
                    if event is None:
                        break
                    data = event.json()
                    received.extend(line["seq"] for line in data["lines"])
                    last_id = event.id
                    if data.get("final"):
                        ended = True
                        break
            if not writer.done():
                reconnects_while_writing += 1
        await asyncio.wait_for(writer, 10)
    assert reconnects_while_writing >= 5
    assert received == list(range(1, total + 1))


async def test_resume_point_of_a_deleted_agent_replays_the_new_one_from_the_start(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "again", [f"old {n}" for n in range(1, 6)])
    assert (await alice.delete("/api/agents/again")).status_code == 204
    await post_lines(alice, "again", ["new 1", "new 2"])
    async with open_stream(alice, stream_path("again"), headers={"Last-Event-ID": "5"}) as stream:
        event = await stream.next()
        assert event is not None and messages_of([event]) == ["new 1", "new 2"]
        await post_lines(alice, "again", ["new 3"])
        live = await stream.next()
    assert live is not None and messages_of([live]) == ["new 3"]


async def test_tail_starts_with_the_last_lines_then_follows(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "tail", [f"m{n}" for n in range(1, 51)])
    async with open_stream(alice, stream_path("tail"), tail=5) as stream:
        first = await stream.next()
        assert first is not None and first.id == "50"
        assert seqs_of([first]) == [46, 47, 48, 49, 50]
        await post_lines(alice, "tail", ["m51"])
        live = await stream.next()
    assert live is not None and seqs_of([live]) == [51]
    # EventSource reconnects to the same URL, ?tail included, with Last-Event-ID: that wins.
    async with open_stream(alice, stream_path("tail"), headers={"Last-Event-ID": "48"}, tail=5) as stream:
        resumed = await stream.next()
    assert resumed is not None and seqs_of([resumed]) == [49, 50, 51]


async def test_level_and_q_filter_replayed_and_live_lines(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "filt", ["debug noise"], level="debug")
    await post_lines(alice, "filt", ["disk almost FULL"], level="warning")
    await post_lines(alice, "filt", ["disk full, giving up"], level="error")
    await post_lines(alice, "filt", ["warning about the network"], level="warning")
    async with open_stream(alice, stream_path("filt"), level="warning", q="full") as stream:
        replay = await stream.next()
        assert replay is not None
        assert messages_of([replay]) == ["disk almost FULL", "disk full, giving up"]
        await post_lines(alice, "filt", ["full but only info"], level="info")
        await post_lines(alice, "filt", ["Full again"], level="critical")
        live = await stream.next()
    assert live is not None
    assert messages_of([live]) == ["Full again"]
    assert live.id == "6"


async def test_reconnect_to_finished_agent_with_nothing_new_gets_204(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "over", ["a", "b", "c"])
    await set_status(alice, "over", "completed")
    for headers, params in (({"Last-Event-ID": "3"}, {}), ({}, {"after": 3})):
        async with open_stream(alice, stream_path("over"), headers=headers, **params) as stream:
            assert stream.response.status_code == 204
    async with open_stream(alice, stream_path("over"), headers={"Last-Event-ID": "2"}) as stream:
        assert stream.response.status_code == 200
        events = await stream.collect_until_closed()
    assert seqs_of(events) == [3]
    assert events[-1].json()["final"] is True


async def test_line_separators_are_escaped_in_data_and_decode_back(alice: httpx.AsyncClient) -> None:
    message = "a\u2028b\u2029c\u0085d 🚀 é"
    await post_lines(alice, "esc", [message])
    raw = b""

    async def read_first_event() -> None:
        nonlocal raw
        async with alice.stream("GET", stream_path("esc")) as response:
            async for chunk in response.aiter_bytes():
                raw += chunk
                if b"\ndata: " in raw and raw.endswith(b"\n\n"):
                    return

    await asyncio.wait_for(read_first_event(), 5)
    data_lines = [line for line in raw.split(b"\n") if line.startswith(b"data: ")]
    assert len(data_lines) == 1
    for forbidden in ("\u2028", "\u2029", "\u0085"):
        assert forbidden.encode() not in data_lines[0]
    data = json.loads(data_lines[0][len(b"data: ") :])
    assert data["lines"][0]["message"] == message
    assert data["logs"] == message + "\n"


async def test_resume_older_than_retention_says_how_many_lines_were_skipped(start_server: ServerFactory) -> None:
    server = await start_server(**{"retention.max_lines_per_agent": 10, "retention.interval": "100ms"})
    async with server.client("alice") as alice:
        await post_lines(alice, "trim", [f"m{n}" for n in range(1, 51)])
        deadline = time.monotonic() + 10
        while (await alice.get("/api/agents/trim")).json()["first_seq"] != 41:
            assert time.monotonic() < deadline, "retention never trimmed the agent"
            await asyncio.sleep(0.05)
        async with open_stream(alice, stream_path("trim"), headers={"Last-Event-ID": "5"}) as stream:
            event = await stream.next()
    assert event is not None
    data = event.json()
    assert data["skipped"] == 35  # seqs 6..40 are gone
    assert data["first_seq"] == 41
    assert seqs_of([event]) == list(range(41, 51))


@pytest.mark.slow  # waits for a token to expire
async def test_stream_ends_with_token_expired_event_when_the_token_expires(server: RunningServer) -> None:
    short = make_token("alice", exp=int(time.time()) + 3)
    async with server.client("alice") as alice:
        await post_lines(alice, "exp", ["before"])
        async with open_stream(alice, stream_path("exp"), headers={"Authorization": f"Bearer {short}"}) as stream:
            first = await stream.next()
            await post_lines(alice, "exp", ["while valid"])
            rest = await stream.collect_until_closed(timeout=8)
    assert first is not None
    assert messages_of([first, *rest]) == ["before", "while valid"]
    last = rest[-1].json()
    assert last["final"] is False
    assert last["reason"] == "token_expired"


@pytest.mark.slow  # waits for the revocation check
async def test_revoking_the_token_of_an_open_stream_ends_it(server: RunningServer) -> None:
    jti = uuid.uuid4().hex
    token = make_token("alice", jti=jti)
    async with server.client("alice") as alice:
        await post_lines(alice, "rev", ["before"])
        async with open_stream(alice, stream_path("rev"), headers={"Authorization": f"Bearer {token}"}) as stream:
            assert (await stream.next()) is not None
            await asyncio.to_thread(revoke_token_offline, server.db, jti)
            rest = await stream.collect_until_closed(timeout=4)
        assert rest[-1].json()["final"] is False
        assert rest[-1].json()["reason"] == "token_revoked"
        again = await alice.get(stream_path("rev"), headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 401


async def test_stream_ticket_opens_the_stream_through_the_url(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client(None) as anonymous:
        await post_lines(alice, "tick", ["hello ticket"])
        await post_lines(alice, "other", ["not for the ticket"])
        minted = await alice.post("/api/stream-tickets", json={"agent": "tick"})
        assert minted.status_code == 201
        ticket = minted.json()["ticket"]
        async with open_stream(anonymous, stream_path("tick"), token=ticket) as stream:
            assert stream.response.status_code == 200
            event = await stream.next()
        assert event is not None and messages_of([event]) == ["hello ticket"]
        assert (await anonymous.get(stream_path("other"), params={"token": ticket})).status_code == 403


@pytest.mark.slow  # waits for the revocation check
@pytest.mark.parametrize("revoked", ["ticket", "parent token"])
async def test_revoking_a_ticket_or_its_parent_token_ends_the_ticket_stream(
    server: RunningServer, revoked: str
) -> None:
    parent_jti = uuid.uuid4().hex
    parent = make_token("alice", jti=parent_jti)
    async with server.client("alice") as alice, server.client(None) as anonymous:
        await post_lines(alice, "tr", ["hello"])
        minted = await alice.post(
            "/api/stream-tickets", json={"agent": "tr"}, headers={"Authorization": f"Bearer {parent}"}
        )
        ticket = minted.json()["ticket"]
        ticket_jti = jwt.decode(ticket, options={"verify_signature": False})["jti"]
        async with open_stream(anonymous, stream_path("tr"), token=ticket) as stream:
            assert (await stream.next()) is not None
            jti = ticket_jti if revoked == "ticket" else parent_jti
            await asyncio.to_thread(revoke_token_offline, server.db, jti)
            rest = await stream.collect_until_closed(timeout=4)
    assert rest[-1].json()["reason"] == "token_revoked"


async def test_deleting_the_agent_ends_its_stream(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "gone", ["soon deleted"])
    async with open_stream(alice, stream_path("gone")) as stream:
        assert (await stream.next()) is not None
        assert (await alice.delete("/api/agents/gone")).status_code == 204
        rest = await stream.collect_until_closed()
    assert rest[-1].json()["final"] is True
    assert rest[-1].json()["reason"] == "deleted"
    assert (await alice.get(stream_path("gone"))).status_code == 404


@pytest.mark.slow  # waits out an agent's silence timeout
async def test_silent_agent_times_out_and_its_stream_ends(start_server: ServerFactory) -> None:
    server = await start_server(**{"agents.timeout": "1s"})
    async with server.client("alice") as alice:
        await post_lines(alice, "mute", ["then silence"])
        async with open_stream(alice, stream_path("mute")) as stream:
            assert (await stream.next()) is not None
            rest = await stream.collect_until_closed(timeout=8)
    final = rest[-1].json()
    assert final["final"] is True
    assert final["status"] == "failed"
    assert final["reason"] == "timeout"


async def test_stream_status_codes_follow_the_auth_order(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob, server.client(None) as anonymous:
        await post_lines(alice, "mine", ["x"])
        assert (await anonymous.get(stream_path("mine"))).status_code == 401
        assert (await anonymous.get(stream_path("bad id!"))).status_code == 401
        assert (await bob.get(stream_path("mine"))).status_code == 403
        assert (await alice.get(stream_path("missing"))).status_code == 404
        assert (await alice.get(stream_path("bad id!"))).status_code == 400
        assert (await alice.get(stream_path("mine"), headers={"Last-Event-ID": "nope"})).status_code == 400


async def test_shutdown_ends_open_streams_and_keeps_every_acknowledged_line(
    start_server: ServerFactory, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "shutdown.db"
    server = await start_server(db=db)
    acknowledged: list[int] = []
    async with server.client("alice") as alice, server.client("alice") as writer_client:
        await post_lines(alice, "sd", ["first"])
        await post_lines(alice, "history", [f"h{n}" for n in range(10000)])
        # A reader that is still replaying a long history when the server stops.
        replaying = await asyncio.wait_for(
            alice.send(alice.build_request("GET", stream_path("history")), stream=True), 5
        )

        async def write() -> None:
            for batch in range(1000):
                try:
                    response = await writer_client.post(
                        "/api/agents/sd/logs", json=[f"w{batch}.{n}" for n in range(10)]
                    )
                except httpx.HTTPError:
                    return
                if response.status_code != 200:
                    return
                answer = response.json()
                acknowledged.extend(range(answer["first_seq"], answer["last_seq"] + 1))

        async with open_stream(alice, stream_path("sd")) as stream:
            assert (await stream.next()) is not None
            writer = asyncio.create_task(write())
            await asyncio.sleep(0.3)
            await server.shutdown()
            # The stream ends cleanly, the way EventSource takes as "reconnect later".
            await stream.collect_until_closed(timeout=10)
        await asyncio.wait_for(writer, 10)
        await replaying.aclose()
    assert len(acknowledged) > 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    restarted = await start_server(db=db)
    async with restarted.client("alice") as alice:
        history = await alice.get("/api/agents/sd/logs", params={"limit": 10000})
    stored = {line["seq"] for line in history.json()["lines"]}
    assert set(acknowledged) <= stored


async def test_stream_limit_is_freed_when_a_client_goes_away(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_streams_per_user": 2})
    async with server.client("alice") as alice:
        await post_lines(alice, "lim", ["x"])
        async with open_stream(alice, stream_path("lim")) as first:
            assert first.response.status_code == 200
            async with open_stream(alice, stream_path("lim")) as second:
                assert second.response.status_code == 200
                refused = await alice.get(stream_path("lim"))
                assert refused.status_code == 429
                assert "retry-after" in refused.headers
        deadline = time.monotonic() + 5
        while (await alice.get("/healthz")).json()["open_streams"] > 0:
            assert time.monotonic() < deadline, "closed streams were never released"
            await asyncio.sleep(0.02)
        async with open_stream(alice, stream_path("lim")) as again:
            assert again.response.status_code == 200
