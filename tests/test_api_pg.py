"""The real HTTP server on PostgreSQL (storage.url = postgresql://…): what a user sees is what SQLite gives."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory, make_token, open_stream, post_lines, stream_path

from sentra.config import load_config
from sentra.serve import StartupError
from sentra.storage.open import revoke_token

pytestmark = pytest.mark.slow  # PostgreSQL

TIMES = ("created_at", "updated_at", "last_line_at", "ended_at", "ts")


def without_times(value: Any) -> Any:
    """A JSON answer with its clock readings left out, so two servers' answers compare equal."""
    if isinstance(value, dict):
        return {key: without_times(item) for key, item in value.items() if key not in TIMES}
    if isinstance(value, list):
        return [without_times(item) for item in value]
    return value


@pytest.fixture
async def pg_server(pg_url: str, start_server: ServerFactory) -> RunningServer:
    """One server on this test's PostgreSQL database."""
    return await start_server(**{"storage.url": pg_url})


async def test_ingest_then_history_and_agent_record(pg_server: RunningServer) -> None:
    async with pg_server.client("alice") as alice:
        answer = await post_lines(alice, "run", ["one", "two", "three"])
        assert answer == {"accepted": 3, "first_seq": 1, "last_seq": 3}
        history = await alice.get("/api/agents/run/logs")
        assert [(line["seq"], line["message"]) for line in history.json()["lines"]] == [
            (1, "one"),
            (2, "two"),
            (3, "three"),
        ]
        agent = (await alice.get("/api/agents/run")).json()
    assert (agent["owner"], agent["status"], agent["line_count"], agent["last_seq"]) == ("alice", "running", 3, 3)


async def test_every_answer_and_error_matches_sqlite(pg_url: str, start_server: ServerFactory) -> None:
    sqlite_server = await start_server()
    pg_server = await start_server(**{"storage.url": pg_url})

    async def script(server: RunningServer) -> list[tuple[int, Any]]:
        answers = []
        async with server.client("alice") as alice, server.client("bob") as bob:
            requests = [
                alice.post("/api/agents", json={"id": "job", "name": "Job", "labels": {"b": "2", "a": "1"}}),
                alice.post("/api/agents", json={"id": "job"}),
                alice.post("/api/agents/job/logs", json=[{"message": "Hello", "level": "warning"}, "plain"]),
                alice.post("/api/agents/job/logs", json={"message": "once"}, headers={"Idempotency-Key": "k"}),
                alice.post("/api/agents/job/logs", json={"message": "once"}, headers={"Idempotency-Key": "k"}),
                bob.post("/api/agents/job/logs", json={"message": "not mine"}),
                bob.patch("/api/agents/job", json={"status": "failed"}),
                alice.get("/api/agents/nobody"),
                alice.get("/api/agents/nobody/logs"),
                alice.get("/api/agents/job/logs", params={"q": "HELLO"}),
                alice.get("/api/agents/job/logs", params={"level": "warning"}),
                alice.get("/api/agents", params={"label": "a:1"}),
                alice.patch("/api/agents/job", json={"status": "completed", "reason": "done"}),
                alice.post("/api/agents/job/logs", json={"message": "too late"}),
                alice.patch("/api/agents/job", json={"status": "running"}),
                alice.get("/api/agents/job"),
                alice.delete("/api/agents/job"),
                alice.get("/api/agents/job"),
            ]
            for request in requests:
                response = await request
                body = response.json() if response.content else None
                answers.append((response.status_code, without_times(body)))
        return answers

    expected = await script(sqlite_server)
    assert {status for status, _ in expected} >= {200, 201, 403, 404, 409}
    assert await script(pg_server) == expected


async def test_stream_delivers_live_lines_and_ends_when_completed(pg_server: RunningServer) -> None:
    async with pg_server.client("alice") as alice:
        await post_lines(alice, "live", ["early"])
        async with open_stream(alice, stream_path("live")) as stream:
            first = await stream.next()
            assert first is not None and first.id == "1"
            await post_lines(alice, "live", ["a", "b"])
            live = await stream.next()
            assert live is not None and live.id == "3"
            assert [line["message"] for line in live.json()["lines"]] == ["a", "b"]
            response = await alice.patch("/api/agents/live", json={"status": "completed"})
            assert response.status_code == 200
            rest = await stream.collect_until_closed()
    assert rest[-1].json()["final"] is True
    assert rest[-1].json()["status"] == "completed"


async def test_resume_by_last_event_id_gets_only_newer_lines(pg_server: RunningServer) -> None:
    async with pg_server.client("alice") as alice:
        await post_lines(alice, "res", [f"m{n}" for n in range(1, 11)])
        async with open_stream(alice, stream_path("res"), headers={"Last-Event-ID": "7"}) as stream:
            event = await stream.next()
    assert event is not None and event.id == "10"
    assert [line["seq"] for line in event.json()["lines"]] == [8, 9, 10]


async def test_two_servers_ingesting_one_agent_give_seq_one_to_n(pg_url: str, start_server: ServerFactory) -> None:
    servers = [await start_server(**{"storage.url": pg_url}) for _ in range(2)]
    clients = [server.client("alice") for server in servers]
    try:

        async def ingest(client: httpx.AsyncClient, writer: int) -> None:
            for request in range(10):
                await post_lines(client, "shared", [f"{writer}-{request}-{n}" for n in range(5)])

        await asyncio.gather(*(ingest(clients[n % 2], n) for n in range(8)))
        histories = [(await client.get("/api/agents/shared/logs", params={"limit": 1000})).json() for client in clients]
    finally:
        for client in clients:
            await client.aclose()
    assert histories[0] == histories[1]
    assert [line["seq"] for line in histories[0]["lines"]] == list(range(1, 401))


async def test_idempotent_retry_on_the_other_server_is_answered_not_stored_twice(
    pg_url: str, start_server: ServerFactory
) -> None:
    a, b = [await start_server(**{"storage.url": pg_url}) for _ in range(2)]
    async with a.client("alice") as on_a, b.client("alice") as on_b:
        first = await post_lines(on_a, "job", ["x", "y"], headers={"Idempotency-Key": "retry-1"})
        again = await post_lines(on_b, "job", ["x", "y"], headers={"Idempotency-Key": "retry-1"})
        history = (await on_b.get("/api/agents/job/logs")).json()
    assert first == again == {"accepted": 2, "first_seq": 1, "last_seq": 2}
    assert [line["message"] for line in history["lines"]] == ["x", "y"]


async def test_stream_cut_by_a_stopped_server_resumes_on_the_other(pg_url: str, start_server: ServerFactory) -> None:
    a, b = [await start_server(**{"storage.url": pg_url}) for _ in range(2)]
    received: list[int] = []
    async with a.client("alice") as on_a, b.client("alice") as on_b:
        await post_lines(on_a, "move", ["1", "2", "3"])
        async with open_stream(on_a, stream_path("move")) as stream:
            event = await stream.next()
            assert event is not None
            received += [line["seq"] for line in event.json()["lines"]]
            await post_lines(on_b, "move", ["4", "5"])
            await a.shutdown()
            last_id = event.id
        assert last_id is not None
        async with open_stream(on_b, stream_path("move"), headers={"Last-Event-ID": last_id}) as resumed:
            event = await resumed.next()
            assert event is not None
            received += [line["seq"] for line in event.json()["lines"]]
    assert received == [1, 2, 3, 4, 5]


async def test_revocation_reaches_every_server(pg_url: str, start_server: ServerFactory) -> None:
    a, b = [await start_server(**{"storage.url": pg_url}) for _ in range(2)]
    jti = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {make_token('alice', jti=jti)}"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        assert (await client.get(f"{b.url}/api/agents")).status_code == 200
        await revoke_token(load_config(None, {"storage.url": pg_url, "auth.jwt_secret": "unused"}), jti)
        statuses: list[int] = []
        for _ in range(50):
            statuses = [(await client.get(f"{server.url}/api/agents")).status_code for server in (a, b)]
            if statuses == [401, 401]:
                break
            await asyncio.sleep(0.1)
    assert statuses == [401, 401]


async def test_banner_and_health_never_show_the_password(pg_url: str, start_server: ServerFactory) -> None:
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@")
    server = await start_server(**{"storage.url": with_password})
    async with server.client(None) as anonymous:
        health = await anonymous.get("/healthz")
    assert health.status_code == 200
    banner = server.output.getvalue()
    assert "(database postgresql://postgres:***@127.0.0.1:" in banner
    assert "s3cret-pw" not in banner + health.text


async def test_unreachable_database_stops_start_up_with_one_line(start_server: ServerFactory) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(StartupError) as failed:
            await start_server(**{"storage.url": f"postgresql://sentra:pw@127.0.0.1:{port}/sentra"})
    message = str(failed.value)
    assert message.startswith(f"cannot open the database postgresql://sentra:***@127.0.0.1:{port}/sentra: ")
    assert "\n" not in message and "pw@" not in message
