"""Stop and share links on two Sentra processes sharing PostgreSQL and Redis: a stop asked on one process is in
the record and the ingest answers of the other, `sentra run` against one is stopped through the other, and a
share link made on one reads through the other until it is revoked there, when both refuse it within a second
and its open stream ends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import pytest
from conftest import open_stream, read_lines
from processes import ServerProcess

pytestmark = pytest.mark.slow  # PostgreSQL, Redis and two server children


async def test_a_stop_asked_on_one_process_shows_in_the_other_and_its_ingest_answers(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        first = await on_a.post("/api/agents/pg-stop/logs", json={"message": "working"})
        assert first.status_code == 200 and "stop_requested" not in first.json()
        assert (await on_b.get("/api/agents/pg-stop")).json()["stop_requested"] is False
        stopped = await on_b.post("/api/agents/pg-stop/stop")
        assert stopped.status_code == 202
        record = (await on_a.get("/api/agents/pg-stop")).json()
        assert (record["stop_requested"], record["stop_requested_by"]) == (True, "alice")
        for client in (on_a, on_b, on_a):
            answer = await client.post("/api/agents/pg-stop/logs", json={"message": "still going"})
            assert answer.status_code == 200
            assert (answer.json()["stop_requested"], answer.json()["stop_requested_by"]) == (True, "alice")
    async with httpx.AsyncClient(base_url=a.url, headers={"Authorization": f"Bearer {a.token('bob')}"}) as bob:
        assert (await bob.post("/api/agents/pg-stop/stop")).status_code == 403


def test_sentra_run_against_one_process_is_stopped_through_the_other(pair: list[ServerProcess]) -> None:
    a, b = pair
    run = subprocess.Popen(
        [sys.executable, "-m", "sentra", "run", "--agent", "pg-sleeper", "--", "sleep", "60"],
        env=a.agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=a.directory,
    )
    try:
        deadline = time.monotonic() + 15
        while not any(agent["id"] == "pg-sleeper" for agent in b.get("/api/agents")["agents"]):
            assert time.monotonic() < deadline, "the agent was not created"
            time.sleep(0.1)
        asked = time.monotonic()
        assert b.send("POST", "/api/agents/pg-sleeper/stop", None).status_code == 202
        run.communicate(timeout=10)
        took = time.monotonic() - asked
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode != 0 and took < 5.0
    record = b.get("/api/agents/pg-sleeper")
    assert (record["status"], record["reason"]) == ("failed", "stopped by alice")


async def test_a_share_link_revoked_on_one_process_is_refused_by_both_within_a_second(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    async with a.client() as on_a:
        await on_a.post("/api/agents/pg-shared/logs", json=[{"message": "one"}])
        await on_a.post("/api/agents/pg-other/logs", json=[{"message": "private"}])
        made = await on_a.post("/api/agents/pg-shared/share", json={"ttl": "1h"})
        assert made.status_code == 201, made.text
        link = made.json()
        guest_headers = {"Authorization": f"Bearer {link['token']}"}
        async with (
            httpx.AsyncClient(base_url=b.url, headers=guest_headers, timeout=10) as guest_b,
            httpx.AsyncClient(base_url=a.url, headers=guest_headers, timeout=10) as guest_a,
        ):
            assert (await guest_b.get("/api/agents/pg-shared")).status_code == 200
            assert (await guest_b.get("/api/agents/pg-other")).status_code == 403
            assert (await guest_b.post("/api/agents/pg-shared/logs", json={"message": "x"})).status_code == 403
            async with b.client() as on_b:
                listed = (await on_b.get("/api/agents/pg-shared/shares")).json()["shares"]
                assert [item["id"] for item in listed] == [link["id"]]
                async with open_stream(guest_b, "/api/agents/pg-shared/logs/stream") as stream:
                    assert stream.response.status_code == 200
                    await read_lines(stream, 1)
                    revoked = await on_a.delete(f"/api/agents/pg-shared/share/{link['id']}")
                    assert revoked.status_code == 204
                    started = time.monotonic()
                    await asyncio.wait_for(stream.collect_until_closed(timeout=5), 5)
                    assert time.monotonic() - started < 1.5  # the other process's poll, once a second
            for guest in (guest_a, guest_b):
                refused = await guest.get("/api/agents/pg-shared")
                assert refused.status_code == 401, refused.text
                assert refused.json()["error"]["code"] == "token_revoked"


async def test_deleting_the_agent_on_one_process_revokes_its_links_on_both(pair: list[ServerProcess]) -> None:
    a, b = pair
    async with a.client() as on_a:
        await on_a.post("/api/agents/pg-reused/logs", json=[{"message": "first run"}])
        link = (await on_a.post("/api/agents/pg-reused/share", json={"ttl": "1h"})).json()
        async with b.client() as on_b:
            assert (await on_b.delete("/api/agents/pg-reused")).status_code == 204
        await on_a.post("/api/agents/pg-reused/logs", json=[{"message": "second run"}])
    headers = {"Authorization": f"Bearer {link['token']}"}
    for process in (a, b):
        async with httpx.AsyncClient(base_url=process.url, headers=headers, timeout=10) as guest:
            deadline = time.monotonic() + 2
            while (answer := await guest.get("/api/agents/pg-reused/logs")).status_code != 401:
                assert time.monotonic() < deadline, answer.text
                await asyncio.sleep(0.1)
