"""GET /api/streams: many agents over one connection, by id or by label, resumable with one cursor."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import httpx
import pytest
from conftest import (
    Event,
    RunningServer,
    create_agent,
    cursor_of,
    make_token,
    open_stream,
    post_lines,
    read_until_final,
    set_status,
    tagged,
)

from sentra.storage.sqlite import revoke_token_offline


async def read_until_closed(stream: Any) -> list[Event]:
    events: list[Event] = await stream.collect_until_closed(timeout=10)
    return events


async def test_lines_are_tagged_by_agent_with_a_final_event_per_agent(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "a", ["a1"])
    await post_lines(alice, "b", ["b1"])
    async with open_stream(alice, "/api/streams", agent=["a", "b"]) as stream:
        replay = [await stream.next(), await stream.next()]
        await post_lines(alice, "a", ["a2"])
        live_a = await stream.next()
        await set_status(alice, "a", "completed")
        final_a = await stream.next()
        await post_lines(alice, "b", ["b2"])
        live_b = await stream.next()
        await set_status(alice, "b", "failed")
        rest = await read_until_closed(stream)
    assert all(event is not None for event in (*replay, live_a, final_a, live_b))
    assert sorted(tagged([e for e in replay if e is not None])) == [("a", "a1"), ("b", "b1")]
    assert live_a is not None and tagged([live_a]) == [("a", "a2")]
    assert final_a is not None
    assert final_a.json()["final"] is True
    assert final_a.json()["agent"] == "a" and final_a.json()["status"] == "completed"
    assert live_b is not None and tagged([live_b]) == [("b", "b2")]
    assert [(e.json()["agent"], e.json()["status"]) for e in rest if e.json().get("final")] == [("b", "failed")]
    assert cursor_of(rest[-1]) == {"a": 2, "b": 2}


async def test_resume_with_cursor_while_lines_arrive_has_no_gap_and_no_duplicate(server: RunningServer) -> None:
    per_agent, per_request = 600, 15
    rng = random.Random(7)
    async with server.client("alice") as writer_client, server.client("alice") as reader:
        for agent_id in ("x", "y"):
            await create_agent(writer_client, id=agent_id)

        async def write(agent_id: str) -> None:
            for start in range(1, per_agent + 1, per_request):
                await post_lines(writer_client, agent_id, [f"{agent_id}{n}" for n in range(start, start + per_request)])
                await asyncio.sleep(0.002)
            await set_status(writer_client, agent_id, "completed")

        writers = asyncio.gather(write("x"), write("y"))
        received: dict[str, list[int]] = {"x": [], "y": []}
        last_id: str | None = None
        reconnects_while_writing = 0
        ended = False
        deadline = time.monotonic() + 25
        while not ended and time.monotonic() < deadline:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            async with open_stream(reader, "/api/streams", headers=headers, agent=["x", "y"]) as stream:
                if stream.response.status_code == 204:
                    break
                assert stream.response.status_code == 200
                for _ in range(rng.randint(1, 4)):
                    event = await stream.next()
                    if event is None:
                        ended = True  # the server closed: both agents finished
                        break
                    for line in event.json()["lines"]:
                        received[line["agent"]].append(line["seq"])
                    last_id = event.id
                    # The cursor never claims a line this client has not been sent.
                    for agent_id, seq in cursor_of(event).items():
                        assert seq == max(received[agent_id], default=0)
            if not writers.done():
                reconnects_while_writing += 1
        await asyncio.wait_for(writers, 10)
    assert reconnects_while_writing >= 5
    assert received == {"x": list(range(1, per_agent + 1)), "y": list(range(1, per_agent + 1))}


async def test_reconnect_after_every_agent_finished_gets_204(alice: httpx.AsyncClient) -> None:
    for agent_id in ("p", "q"):
        await post_lines(alice, agent_id, ["only"])
        await set_status(alice, agent_id, "completed")
    async with open_stream(alice, "/api/streams", agent=["p", "q"]) as stream:
        events = await read_until_closed(stream)
    assert sorted(tagged(events)) == [("p", "only"), ("q", "only")]
    assert sorted(e.json()["agent"] for e in events if e.json().get("final")) == ["p", "q"]
    async with open_stream(
        alice, "/api/streams", headers={"Last-Event-ID": events[-1].id or ""}, agent=["p", "q"]
    ) as s:
        assert s.response.status_code == 204


async def test_label_stream_picks_up_agents_created_after_connecting(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        await create_agent(alice, id="early", labels={"batch": "42"})
        await post_lines(alice, "early", ["early line"])
        async with open_stream(alice, "/api/streams", label="batch=42") as stream:
            first = await stream.next()
            await create_agent(alice, id="late", labels={"batch": "42"})
            await create_agent(alice, id="elsewhere", labels={"batch": "7"})
            await create_agent(bob, id="bobs", labels={"batch": "42"})
            await post_lines(bob, "bobs", ["bob's line"])
            await post_lines(alice, "elsewhere", ["not in the batch"])
            await post_lines(alice, "late", ["late line"])
            second = await stream.next()
            await set_status(alice, "early", "completed")
            await set_status(alice, "late", "completed")
            rest = await read_until_final(stream, "early", "late")
    events = [e for e in (first, second, *rest) if e is not None]
    assert tagged(events) == [("early", "early line"), ("late", "late line")]
    assert sorted(e.json()["agent"] for e in events if e.json().get("final")) == ["early", "late"]


async def test_agent_relabelled_into_the_batch_brings_its_earlier_lines(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="member", labels={"batch": "9"})
    await create_agent(alice, id="newcomer")
    await post_lines(alice, "newcomer", ["said before joining"])
    async with open_stream(alice, "/api/streams", label="batch=9") as stream:
        relabel = await alice.patch("/api/agents/newcomer", json={"labels": {"batch": "9"}})
        assert relabel.status_code == 200
        await post_lines(alice, "newcomer", ["said after joining"])
        events = [await stream.next(), await stream.next()]
    assert tagged([e for e in events if e is not None]) == [
        ("newcomer", "said before joining"),
        ("newcomer", "said after joining"),
    ]


async def test_multi_stream_refuses_other_users_agents_and_missing_arguments(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob, server.client(None) as anonymous:
        await post_lines(alice, "hers", ["x"])
        await post_lines(bob, "his", ["y"])
        assert (await alice.get("/api/streams", params={"agent": ["hers", "his"]})).status_code == 403
        assert (await alice.get("/api/streams")).status_code == 400
        assert (await alice.get("/api/streams", params={"agent": "nobody"})).status_code == 404
        assert (await anonymous.get("/api/streams", params={"agent": "hers"})).status_code == 401
        bad_cursor = await alice.get("/api/streams", params={"agent": "hers"}, headers={"Last-Event-ID": "hers=x"})
        assert bad_cursor.status_code == 400


@pytest.mark.slow  # waits for the revocation check
async def test_revoking_the_token_ends_the_multi_stream(server: RunningServer) -> None:
    jti = uuid.uuid4().hex
    token = make_token("alice", jti=jti)
    async with server.client("alice") as alice:
        await post_lines(alice, "r1", ["one"])
        headers = {"Authorization": f"Bearer {token}"}
        async with open_stream(alice, "/api/streams", headers=headers, agent="r1") as stream:
            assert (await stream.next()) is not None
            await asyncio.to_thread(revoke_token_offline, server.db, jti)
            rest = await read_until_closed(stream)
    assert rest[-1].json()["final"] is False
    assert rest[-1].json()["reason"] == "token_revoked"
    assert cursor_of(rest[-1]) == {"r1": 1}
