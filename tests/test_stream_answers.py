"""Stream answers are like every other answer: streams are read without a request handler, so these check that
the headers, refusals, argument reading and access log match what Tornado's handlers give the other paths."""

from __future__ import annotations

import logging

import httpx
import pytest
from conftest import ServerFactory, open_stream

VIEWER = "https://viewer.example"


def error_of(response: httpx.Response) -> dict[str, str]:
    """The {"code", "message"} of an error answer."""
    assert response.headers["content-type"] == "application/json; charset=utf-8", response.headers
    return dict(response.json()["error"])


async def finished_agent(client: httpx.AsyncClient, agent_id: str, messages: list[str]) -> None:
    """An agent with `messages` logged and completed, so a stream of it replays them and ends."""
    response = await client.post(f"/api/agents/{agent_id}/logs", json=[{"message": m} for m in messages])
    assert response.status_code == 200, response.text
    assert (await client.patch(f"/api/agents/{agent_id}", json={"status": "completed"})).status_code == 200


async def test_stream_takes_the_token_from_the_query_or_the_cookie_and_logs_one_masked_line_when_it_ends(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(**{"server.access_log": True})
    token = server.token("alice")
    async with server.client("alice") as alice:
        await finished_agent(alice, "s1", ["a", "b"])
    with caplog.at_level(logging.INFO, logger="sentra.access"):
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            async with open_stream(anonymous, "/api/agents/s1/logs/stream", token=token) as stream:
                by_query = await stream.collect_until_closed()
            missing = await anonymous.get("/api/agents/nope/logs/stream", params={"token": token})
            nobody = await anonymous.get("/api/agents/s1/logs/stream")
        browser = httpx.AsyncClient(base_url=server.url, cookies={"sentra_token": token})
        async with browser, open_stream(browser, "/api/agents/s1/logs/stream") as stream:
            by_cookie = await stream.collect_until_closed()
    for events in (by_query, by_cookie):
        assert [line["message"] for event in events for line in event.json()["lines"]] == ["a", "b"]
        assert events[-1].json()["final"] is True
    assert missing.status_code == 404 and error_of(missing)["code"] == "agent_not_found"
    assert nobody.status_code == 401 and error_of(nobody)["code"] == "not_authenticated"
    access = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "sentra.access"]
    messages = [message for _, message in access]
    assert sum("200 GET /api/agents/s1/logs/stream?token=*** (127.0.0.1)" in m for m in messages) == 1, access
    assert sum("200 GET /api/agents/s1/logs/stream (127.0.0.1)" in m for m in messages) == 1, access
    assert ("WARNING", next(m for m in messages if m.startswith("404 GET /api/agents/nope"))) in access
    assert all(token not in message for message in messages)


async def test_stream_answers_and_refusals_carry_the_security_and_cors_headers(start_server: ServerFactory) -> None:
    server = await start_server(**{"server.cors_origins": [VIEWER]})
    async with server.client("alice") as alice:
        await finished_agent(alice, "c1", ["x"])
        for origin in (VIEWER, "https://evil.example"):
            headers = {"Origin": origin}
            async with open_stream(alice, "/api/agents/c1/logs/stream", headers=headers) as stream:
                opened = stream.response
                assert len(await stream.collect_until_closed()) == 1
            over = await alice.get("/api/agents/c1/logs/stream", headers={**headers, "Last-Event-ID": "1"})
            refused = await alice.get("/api/streams", headers=headers)
            for answer in (opened, over, refused):
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["referrer-policy"] == "no-referrer"
                assert answer.headers.get("access-control-allow-origin") == (origin if origin == VIEWER else None)
            assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/event-stream")
            assert over.status_code == 204 and over.content == b"" and "content-type" not in over.headers
            assert refused.status_code == 400 and "?agent=ID" in error_of(refused)["message"]
        preflight = await alice.options("/api/agent-events", headers={"Origin": VIEWER})
        posted = await alice.post("/api/streams", json={})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == VIEWER
    assert posted.status_code == 405 and error_of(posted)["code"] == "method_not_allowed"
    assert posted.headers["Allow"] == "GET, HEAD, OPTIONS"


async def test_stream_arguments_are_read_as_every_handler_reads_them(start_server: ServerFactory) -> None:
    server = await start_server()
    async with server.client("alice") as alice:
        await finished_agent(alice, "q1", ["needle here", "hay", "more needle"])
        # Control characters become spaces and the value is stripped, so this is ?q=needle.
        async with open_stream(alice, "/api/agents/q1/logs/stream?q=%01needle%20") as stream:
            events = await stream.collect_until_closed()
        bad_level = await alice.get("/api/agents/q1/logs/stream?level=%ff")
        bad_path = await alice.get("/api/v1/stream-logs/request/%ff")
        bad_tail = await alice.get("/api/agents/q1/logs/stream", params={"tail": "1_000"})
        crowded = await alice.get("/api/agents/q1/logs/stream?" + "&".join(["level=info"] * 1001))
    assert [line["message"] for event in events for line in event.json()["lines"]] == ["needle here", "more needle"]
    assert bad_level.status_code == 400 and error_of(bad_level)["message"] == "Invalid unicode in level: b'\\xff'"
    assert bad_path.status_code == 400 and error_of(bad_path)["message"] == "Invalid unicode in agent_id: b'\\xff'"
    assert bad_tail.status_code == 400 and "'tail' must be an integer" in error_of(bad_tail)["message"]
    assert crowded.status_code == 400 and error_of(crowded)["message"].startswith("Invalid query string: ")
