"""Stopping a run through the API: POST /api/agents/{id}/stop, the record's stop_requested, the ingest answers that
carry it, who may ask, and a run that has already ended."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from conftest import RunningServer, ServerFactory, create_agent, error_of, post_lines
from otlp_bodies import agent_json

from sentra.api.runcontrol import STOP_HEADER


def as_user(server: RunningServer, sub: str, **claims: str) -> httpx.AsyncClient:
    """A client with a token for `sub` carrying `claims` (a scope, say)."""
    return httpx.AsyncClient(base_url=server.url, headers=server.headers(sub, **claims), timeout=10.0)


async def test_stop_answers_202_and_the_record_shows_who_asked(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="runaway")
    before = (await alice.get("/api/agents/runaway")).json()
    assert (before["stop_requested"], before["stop_requested_by"]) == (False, None)
    response = await alice.post("/api/agents/runaway/stop")
    assert response.status_code == 202, response.text
    assert (response.json()["stop_requested"], response.json()["stop_requested_by"]) == (True, "alice")
    record = (await alice.get("/api/agents/runaway")).json()
    assert (record["status"], record["stop_requested"], record["stop_requested_by"]) == ("running", True, "alice")
    listed = (await alice.get("/api/agents")).json()["agents"]
    assert [agent["stop_requested"] for agent in listed if agent["id"] == "runaway"] == [True]


async def test_every_later_ingest_answer_carries_stop_requested(alice: httpx.AsyncClient) -> None:
    first = await post_lines(alice, "busy", ["working"])
    assert "stop_requested" not in first
    assert (await alice.post("/api/agents/busy/stop")).status_code == 202
    for batch in (["still working"], ["and more", "lines"]):
        answer = await post_lines(alice, "busy", batch)
        assert (answer["stop_requested"], answer["stop_requested_by"]) == (True, "alice")
    # A retried request's stored answer says so too.
    headers = {"Idempotency-Key": "k1"}
    await post_lines(alice, "busy", ["once"], headers=headers)
    replay = await alice.post("/api/agents/busy/logs", json=[{"message": "once"}], headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["stop_requested"] is True


async def test_a_second_stop_keeps_the_first_requester(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="twice")
    assert (await alice.post("/api/agents/twice/stop")).status_code == 202
    async with as_user(server, "root", scope="admin") as admin:
        again = await admin.post("/api/agents/twice/stop")
    assert again.status_code == 202
    assert again.json()["stop_requested_by"] == "alice"


async def test_only_the_owner_or_an_admin_may_stop_a_run(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="mine")
    async with server.client("bob") as bob:
        refused = await bob.post("/api/agents/mine/stop")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "not_owner"
    async with as_user(server, "carol", scope="logs:read") as reader:
        assert (await reader.post("/api/agents/mine/stop")).status_code == 403
    async with server.client(None) as anonymous:
        assert (await anonymous.post("/api/agents/mine/stop")).status_code == 401
    assert (await alice.get("/api/agents/mine")).json()["stop_requested"] is False
    async with as_user(server, "root", scope="admin") as admin:
        stopped = await admin.post("/api/agents/mine/stop")
    assert (stopped.status_code, stopped.json()["stop_requested_by"]) == (202, "root")
    assert (await alice.post("/api/agents/nobody/stop")).status_code == 404


async def test_stopping_a_finished_run_is_a_409_that_says_so(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="done")
    assert (await alice.patch("/api/agents/done", json={"status": "completed"})).status_code == 200
    response = await alice.post("/api/agents/done/stop")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "agent_finished"
    assert "completed" in error["message"] and "only a running agent can be stopped" in error["message"]
    assert (await alice.get("/api/agents/done")).json()["stop_requested"] is False


async def test_the_run_that_ends_after_a_stop_keeps_the_flag_and_its_reason(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "ending", ["go"])
    await alice.post("/api/agents/ending/stop")
    ended = await alice.patch("/api/agents/ending", json={"status": "failed", "reason": "stopped by alice"})
    assert ended.status_code == 200
    assert (ended.json()["status"], ended.json()["reason"], ended.json()["stop_requested"]) == (
        "failed",
        "stopped by alice",
        True,
    )


async def test_the_stop_request_survives_a_restart(start_server: ServerFactory, tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    first = await start_server(db=db)
    async with first.client("alice") as alice:
        await post_lines(alice, "kept", ["line"])
        assert (await alice.post("/api/agents/kept/stop")).status_code == 202
    await first.shutdown()
    second = await start_server(db=db)
    async with second.client("alice") as alice:
        assert (await alice.get("/api/agents/kept")).json()["stop_requested_by"] == "alice"
        assert (await post_lines(alice, "kept", ["after"]))["stop_requested"] is True


async def test_a_database_made_before_stop_requests_gains_the_column(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE agents (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL DEFAULT '',
                owner TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, labels TEXT NOT NULL DEFAULT '{}',
                created_at REAL NOT NULL, updated_at REAL NOT NULL, last_line_at REAL,
                first_seq INTEGER NOT NULL DEFAULT 1, last_seq INTEGER NOT NULL DEFAULT 0);
            INSERT INTO agents (id, owner, status, created_at, updated_at) VALUES ('old', 'alice', 'running', 1, 1);
            """
        )
    conn.close()
    server = await start_server(db=db)
    async with server.client("alice") as alice:
        assert (await alice.get("/api/agents/old")).json()["stop_requested"] is False
        assert (await alice.post("/api/agents/old/stop")).status_code == 202


async def test_otlp_answers_name_the_agents_asked_to_stop(alice: httpx.AsyncClient) -> None:
    sent = await alice.post("/v1/logs", json=agent_json("otel-run", "first"))
    assert sent.status_code == 200 and STOP_HEADER.lower() not in sent.headers
    await alice.post("/api/agents/otel-run/stop")
    again = await alice.post("/v1/logs", json=agent_json("otel-run", "second"))
    assert again.status_code == 200
    assert again.headers[STOP_HEADER] == "otel-run"
