"""Watching before the first line: ?wait=1 on both stream routes, label streams that outlive their agents, and the
README's curl walkthrough run as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    create_agent,
    cursor_of,
    make_token,
    messages_of,
    open_stream,
    post_lines,
    read_lines,
    read_until_final,
    seqs_of,
    set_status,
    stream_path,
    tagged,
)
from processes import ROOT, ServerProcess
from test_openapi import assert_valid

# ---- one agent -------------------------------------------------------------------------------------------


async def test_stream_opened_before_the_agent_exists_gets_every_line_from_seq_1(start_server: ServerFactory) -> None:
    server = await start_server(**{"streams.heartbeat": "200ms"})
    async with server.client("alice") as alice:
        assert (await alice.get(stream_path("early"))).status_code == 404
        assert (await alice.get(stream_path("early"), params={"wait": "0"})).status_code == 404
        async with open_stream(alice, stream_path("early"), wait="1") as stream:
            assert stream.response.status_code == 200
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            await asyncio.sleep(0.5)  # heartbeats while nobody has logged yet
            # The request that creates the agent commits a batch: all of it reaches the waiting stream.
            await post_lines(alice, "early", ["first", "second", "third"])
            await post_lines(alice, "early", ["fourth"])
            events = await read_lines(stream, 4)
            await set_status(alice, "early", "completed")
            rest = await stream.collect_until_closed()
    assert stream.retry == 2000
    assert stream.comments.count("heartbeat") >= 1
    assert seqs_of(events) == [1, 2, 3, 4]
    assert messages_of(events) == ["first", "second", "third", "fourth"]
    assert [e.json() for e in rest] == [{"logs": "", "status": "completed", "final": True, "lines": []}]
    assert rest[-1].id == "4"


async def test_waiting_for_an_agent_another_user_creates_ends_with_not_owner_and_shows_nothing(
    server: RunningServer,
) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        async with open_stream(bob, stream_path("contested"), wait="1") as stream:
            assert stream.response.status_code == 200
            await post_lines(alice, "contested", ["alice's private step", "and another"])
            events = await stream.collect_until_closed()
        assert [e.json() for e in events] == [
            {"logs": "", "status": None, "final": False, "reason": "not_owner", "lines": []}
        ]
        assert not any("private" in e.data or "another" in e.data for e in events)
        assert_valid(events[0].json(), "/components/schemas/LogsEvent")
        # The reconnect is refused as any stream of another user's agent is, waiting or not.
        assert (await bob.get(stream_path("contested"), params={"wait": "1"})).status_code == 403
        assert (await bob.get(stream_path("contested"))).status_code == 403


@pytest.mark.parametrize(("path", "agent"), [("/api/agents/x/logs/stream", []), ("/api/streams", ["x"])])
@pytest.mark.parametrize("value", ["yes", "2", "true", ""])
async def test_a_wait_value_other_than_0_or_1_is_a_400_saying_what_is_allowed(
    alice: httpx.AsyncClient, path: str, agent: list[str], value: str
) -> None:
    response = await alice.get(path, params={"agent": agent, "wait": value})
    assert response.status_code == 400
    assert "'wait' must be 1" in response.json()["error"]["message"]
    assert "or 0" in response.json()["error"]["message"]


async def test_a_waiting_stream_with_the_resume_point_of_a_deleted_agent_gets_the_new_one_from_seq_1(
    alice: httpx.AsyncClient,
) -> None:
    await post_lines(alice, "phoenix", [f"old {n}" for n in range(1, 6)])
    assert (await alice.delete("/api/agents/phoenix")).status_code == 204
    async with open_stream(alice, stream_path("phoenix"), headers={"Last-Event-ID": "5"}, wait="1") as stream:
        assert stream.response.status_code == 200
        await post_lines(alice, "phoenix", ["new 1", "new 2"])
        events = await read_lines(stream, 2)
    assert messages_of(events) == ["new 1", "new 2"]


async def test_deleting_the_agent_still_ends_a_waiting_stream_that_follows_it(alice: httpx.AsyncClient) -> None:
    async with open_stream(alice, stream_path("short-lived"), wait="1") as stream:
        await post_lines(alice, "short-lived", ["hello"])
        assert messages_of(await read_lines(stream, 1)) == ["hello"]
        assert (await alice.delete("/api/agents/short-lived")).status_code == 204
        rest = await stream.collect_until_closed()
    assert [(e.json()["final"], e.json()["reason"]) for e in rest] == [(True, "deleted")]


# ---- many agents ------------------------------------------------------------------------------------------


async def test_multi_stream_waits_for_named_agents_and_ends_another_users_with_not_owner(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        await post_lines(alice, "known", ["known 1"])
        names = ["known", "later", "bobs"]
        assert (await alice.get("/api/streams", params={"agent": names})).status_code == 404
        async with open_stream(alice, "/api/streams", agent=names, wait="1") as stream:
            assert tagged(await read_lines(stream, 1)) == [("known", "known 1")]
            await post_lines(bob, "bobs", ["bob's secret"])
            refused = await stream.next(10)
            await post_lines(alice, "later", ["later 1", "later 2"])
            joined = await read_lines(stream, 2)
            await set_status(alice, "known", "completed")
            await set_status(alice, "later", "failed")
            rest = await stream.collect_until_closed()
    assert refused is not None
    assert refused.json() == {
        "logs": "",
        "status": None,
        "final": True,
        "agent": "bobs",
        "reason": "not_owner",
        "lines": [],
    }
    assert_valid(refused.json(), "/components/schemas/LogsEvent")
    assert tagged(joined) == [("later", "later 1"), ("later", "later 2")]
    every = [refused, *joined, *rest]
    assert not any("secret" in e.data for e in every)
    assert [(e.json()["agent"], e.json()["status"]) for e in rest if e.json().get("final")] == [
        ("known", "completed"),
        ("later", "failed"),
    ]
    assert cursor_of(rest[-1]) == {"known": 1, "later": 2}


async def test_multi_stream_resumes_a_cursor_that_names_an_agent_not_created_yet(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "there", ["t1", "t2"])
    # "ghost=3" belongs to an agent deleted before: the one created now starts from seq 1.
    headers = {"Last-Event-ID": "ghost=3,there=1"}
    async with open_stream(alice, "/api/streams", headers=headers, agent=["there", "ghost"], wait="1") as stream:
        assert stream.response.status_code == 200
        first = await read_lines(stream, 1)
        await post_lines(alice, "ghost", ["g1"])
        second = await read_lines(stream, 1)
    assert tagged(first) == [("there", "t2")]
    assert tagged(second) == [("ghost", "g1")]
    assert cursor_of(second[-1]) == {"ghost": 1, "there": 2}


async def test_label_stream_stays_open_after_every_agent_finished_and_picks_up_a_new_one(
    alice: httpx.AsyncClient,
) -> None:
    await create_agent(alice, id="first-of-batch", labels={"batch": "77"})
    await post_lines(alice, "first-of-batch", ["one"])
    async with open_stream(alice, "/api/streams", label="batch=77") as stream:
        assert tagged(await read_lines(stream, 1)) == [("first-of-batch", "one")]
        await set_status(alice, "first-of-batch", "completed")
        ended = await read_until_final(stream, "first-of-batch")
        await create_agent(alice, id="second-of-batch", labels={"batch": "77"})
        await post_lines(alice, "second-of-batch", ["two"])
        joined = await read_lines(stream, 1)
        await set_status(alice, "second-of-batch", "completed")
        last = await read_until_final(stream, "second-of-batch")
    assert tagged(joined) == [("second-of-batch", "two")]
    assert cursor_of(last[-1]) == {"first-of-batch": 1, "second-of-batch": 1}
    # Reconnecting with a cursor where every agent has finished is no 204 for a label stream: it waits for more.
    headers = {"Last-Event-ID": last[-1].id or ""}
    async with open_stream(alice, "/api/streams", headers=headers, label="batch=77") as stream:
        assert stream.response.status_code == 200
        await read_until_final(stream, "first-of-batch", "second-of-batch")
        await create_agent(alice, id="third-of-batch", labels={"batch": "77"})
        await post_lines(alice, "third-of-batch", ["three"])
        assert tagged(await read_lines(stream, 1)) == [("third-of-batch", "three")]
    assert [e.json()["agent"] for e in ended if e.json().get("final")] == ["first-of-batch"]


async def test_an_agent_list_where_every_agent_finished_still_gets_204_with_wait(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "done-1", ["only"])
    await set_status(alice, "done-1", "completed")
    headers = {"Last-Event-ID": "done-1=1"}
    async with open_stream(alice, "/api/streams", headers=headers, agent="done-1", wait="1") as stream:
        assert stream.response.status_code == 204


# ---- the README's walkthrough ----------------------------------------------------------------------------


def walkthrough_script() -> str:
    """The shell block of the README's "Five minutes with curl", as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Five minutes with curl", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, "the walkthrough has no sh block"
    return match.group(1)


@pytest.fixture
def sentra_child(tmp_path: Path) -> Iterator[ServerProcess]:
    """`python server.py` in an empty directory, on its own database and generated key, as a newcomer runs it."""
    process = ServerProcess(tmp_path / "sentra.db", cwd=tmp_path).start()
    try:
        yield process
    finally:
        process.terminate()


@pytest.mark.slow  # a server child and curl
def test_the_readme_walkthrough_runs_as_written(sentra_child: ServerProcess, tmp_path: Path) -> None:
    assert shutil.which("curl"), "the README's walkthrough needs curl"
    script = walkthrough_script()
    assert "http://127.0.0.1:8765" in script and "?wait=1" in script
    # The only change: the port this test's server listens on.
    script = script.replace("http://127.0.0.1:8765", sentra_child.url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SENTRA_")}
    # `sentra` as pip installed it next to this Python.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # The background curl printed the stream until its final event, interleaved with the other commands' answers
    # (which end without a newline): each event is its id line and its data line, written together.
    events = re.findall(r"id: (\d+)\ndata: (.*)\n", done.stdout)
    assert "retry: 2000\n" in done.stdout
    shown = [line["message"] for _, data in events for line in json.loads(data)["lines"]]
    assert shown == ["step 1: open the page", "plain line", "another one"]
    last_id, last = events[-1]
    assert (last_id, json.loads(last)["final"], json.loads(last)["status"]) == ("3", True, "completed")


# ---- PostgreSQL and Redis: two processes ------------------------------------------------------------------


@pytest.mark.slow  # PostgreSQL, Redis and two server children
async def test_a_waiting_stream_on_one_process_gets_an_agent_created_through_the_other(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    async with (
        httpx.AsyncClient(base_url=a.url, headers=headers) as on_a,
        httpx.AsyncClient(base_url=b.url, headers=headers) as on_b,
        open_stream(on_a, stream_path("cross"), wait="1") as single,
        open_stream(on_a, "/api/streams", agent="cross", wait="1") as many,
    ):
        assert (single.response.status_code, many.response.status_code) == (200, 200)
        await post_lines(on_b, "cross", ["made on b", "in one batch"])
        assert messages_of(await read_lines(single, 2)) == ["made on b", "in one batch"]
        assert tagged(await read_lines(many, 2)) == [("cross", "made on b"), ("cross", "in one batch")]
        await set_status(on_b, "cross", "completed")
        assert (await single.collect_until_closed())[-1].json()["final"] is True
        assert (await many.collect_until_closed())[-1].json()["agent"] == "cross"
