"""What every answer shares, whatever the endpoint: one handler model reads each request and writes each answer, so
these hold for ingest, the event streams, the JSON endpoints, the viewer's files and the refusals alike."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from conftest import RunningServer, ServerFactory, error_of, open_stream, post_lines, set_status

VIEWER = "https://viewer.example"


async def finished_agent(client: httpx.AsyncClient, agent_id: str, messages: list[str]) -> None:
    """An agent with `messages` logged and completed, so a stream of it replays them and ends."""
    await post_lines(client, agent_id, messages)
    await set_status(client, agent_id, "completed")


async def raw_exchange(server: RunningServer, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or 5 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(data)
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
    except TimeoutError:
        pass
    writer.close()
    return received


async def test_every_kind_of_answer_carries_the_security_and_cors_headers_and_names_no_server(
    start_server: ServerFactory,
) -> None:
    server = await start_server(**{"server.cors_origins": [VIEWER]})
    async with server.client("alice") as alice:
        alice.headers["Origin"] = VIEWER
        await finished_agent(alice, "c1", ["x"])
        async with open_stream(alice, "/api/agents/c1/logs/stream", headers={"Origin": VIEWER}) as stream:
            opened = stream.response
            assert len(await stream.collect_until_closed()) == 1
        answers = {
            "ingest": await alice.post("/api/agents/c2/logs", json=["y"]),
            "stream": opened,
            "stream over": await alice.get("/api/agents/c1/logs/stream", headers={"Last-Event-ID": "1"}),
            "stream refused": await alice.get("/api/streams"),
            "agent": await alice.get("/api/agents/c1"),
            "history download": await alice.get("/api/agents/c1/logs?format=text"),
            "health": await alice.get("/healthz"),
            "viewer file": await alice.get("/sentra.js"),
            "viewer 404": await alice.get("/no-such-file.js"),
            "api 404": await alice.get("/api/no-such-thing"),
            "405": await alice.put("/api/agents/c1"),
            "pre-flight": await alice.options("/api/agent-events"),
            "not authenticated": await alice.get("/api/agents", headers={"Authorization": "Bearer nonsense"}),
        }
    for name, answer in answers.items():
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["referrer-policy"] == "no-referrer", name
        assert answer.headers["access-control-allow-origin"] == VIEWER, name
        # Origin first; a compressible answer also varies by Accept-Encoding (tests/test_gzip.py)
        assert answer.headers["vary"] in ("Origin", "Origin, Accept-Encoding"), name
        assert "date" in answer.headers, name
        assert "server" not in answer.headers, name
    assert answers["stream"].headers["content-type"].startswith("text/event-stream")
    assert answers["stream over"].status_code == 204 and answers["stream over"].content == b""
    assert "content-type" not in answers["stream over"].headers
    assert (
        answers["stream refused"].status_code == 400 and "?agent=ID" in error_of(answers["stream refused"])["message"]
    )
    assert answers["405"].status_code == 405 and answers["405"].headers["allow"] == "GET, HEAD, DELETE, PATCH, OPTIONS"
    assert answers["pre-flight"].status_code == 204
    assert answers["pre-flight"].headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert answers["viewer 404"].headers["content-security-policy"].startswith("default-src 'self'")


async def test_a_token_is_taken_from_the_header_the_query_or_the_cookie_and_logged_masked_once_per_request(
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
            history = await anonymous.get("/api/agents/s1/logs", params={"token": token})
            ingested = await anonymous.post("/api/agents/s2/logs", params={"token": token}, json=["c"])
            missing = await anonymous.get("/api/agents/nope/logs/stream", params={"token": token})
            nobody = await anonymous.get("/api/agents/s1/logs/stream")
        browser = httpx.AsyncClient(base_url=server.url, cookies={"sentra_token": token})
        async with browser, open_stream(browser, "/api/agents/s1/logs/stream") as stream:
            by_cookie = await stream.collect_until_closed()
            listed = await browser.get("/api/agents")
    for events in (by_query, by_cookie):
        assert [line["message"] for event in events for line in event.json()["lines"]] == ["a", "b"]
        assert events[-1].json()["final"] is True
    assert [line["message"] for line in history.json()["lines"]] == ["a", "b"]
    assert ingested.status_code == 200 and listed.status_code == 200
    assert {agent["id"] for agent in listed.json()["agents"]} == {"s1", "s2"}
    assert missing.status_code == 404 and error_of(missing)["code"] == "agent_not_found"
    assert nobody.status_code == 401 and error_of(nobody)["code"] == "not_authenticated"
    access = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "sentra.access"]
    messages = [message for _, message in access]
    assert sum("200 GET /api/agents/s1/logs/stream?token=*** (127.0.0.1)" in m for m in messages) == 1, access
    assert sum("200 GET /api/agents/s1/logs/stream (127.0.0.1)" in m for m in messages) == 1, access
    assert sum("200 GET /api/agents/s1/logs?token=*** (127.0.0.1)" in m for m in messages) == 1, access
    assert sum("200 POST /api/agents/s2/logs?token=*** (127.0.0.1)" in m for m in messages) == 1, access
    assert ("WARNING", next(m for m in messages if m.startswith("404 GET /api/agents/nope"))) in access
    assert all(token not in message for message in messages)


async def test_query_and_path_arguments_are_read_one_way_on_every_endpoint(server: RunningServer) -> None:
    crowded = "&".join(["level=info"] * 1001)
    async with server.client("alice") as alice:
        await finished_agent(alice, "q1", ["needle here", "hay", "more needle"])
        # Control characters become spaces and the value is stripped, so this is ?q=needle.
        async with open_stream(alice, "/api/agents/q1/logs/stream?q=%01needle%20") as stream:
            streamed = await stream.collect_until_closed()
        history = await alice.get("/api/agents/q1/logs?q=%01needle%20")
        answers = {
            path: await alice.get(path)
            for path in (
                "/api/agents/q1/logs/stream?level=%ff",
                "/api/agents/q1/logs?level=%ff",
                "/api/v1/stream-logs/request/%ff",
                "/api/agents/%ff",
                "/api/agents/q1/logs/stream?tail=1_000",
                "/api/agents/q1/logs?limit=1_000",
                f"/api/agents/q1/logs/stream?{crowded}",
                f"/api/agents/q1/logs?{crowded}",
            )
        }
    assert [line["message"] for event in streamed for line in event.json()["lines"]] == ["needle here", "more needle"]
    assert [line["message"] for line in history.json()["lines"]] == ["needle here", "more needle"]
    messages = {path: (answer.status_code, error_of(answer)["message"]) for path, answer in answers.items()}
    assert messages["/api/agents/q1/logs/stream?level=%ff"] == (400, "Invalid unicode in level: b'\\xff'")
    assert messages["/api/agents/q1/logs?level=%ff"] == (400, "Invalid unicode in level: b'\\xff'")
    assert messages["/api/v1/stream-logs/request/%ff"] == (400, "Invalid unicode in agent_id: b'\\xff'")
    assert messages["/api/agents/%ff"] == (400, "Invalid unicode in agent_id: b'\\xff'")
    assert messages["/api/agents/q1/logs/stream?tail=1_000"][0] == 400
    assert "'tail' must be an integer" in messages["/api/agents/q1/logs/stream?tail=1_000"][1]
    assert "'limit' must be an integer" in messages["/api/agents/q1/logs?limit=1_000"][1]
    for path in (f"/api/agents/q1/logs/stream?{crowded}", f"/api/agents/q1/logs?{crowded}"):
        assert messages[path][0] == 400 and messages[path][1].startswith("Invalid query string: "), path


async def test_a_request_without_a_host_or_with_two_is_refused_in_words_on_every_endpoint(
    server: RunningServer,
) -> None:
    token = server.token("alice")
    ingest = "POST /api/agents/h1/logs HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\nContent-Length: 1\r\n\r\nx"
    health = "GET /healthz HTTP/1.1\r\n{host}\r\n"
    for request in (ingest, health):
        for host, refusal in (("", "Missing Host header"), ("Host: a\r\nHost: b\r\n", "Multiple host headers")):
            answer = await raw_exchange(server, request.format(host=host, token=token).encode())
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:200]
            assert refusal.encode() in answer and b"Connection: close" in answer
        # HTTP/1.0 does not require a Host.
        old = request.format(host="", token=token).replace(" HTTP/1.1", " HTTP/1.0")
        served = await raw_exchange(server, old.encode())
        assert served.startswith(b"HTTP/1.1 200 OK\r\n"), served[:200]
    async with server.client("alice") as alice:
        history = await alice.get("/api/agents/h1/logs")
    assert [line["message"] for line in history.json()["lines"]] == ["x"]  # the HTTP/1.0 request's alone


async def test_a_refusal_the_head_shows_is_answered_in_json_before_the_body_is_sent(
    start_server: ServerFactory,
) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    token = server.token("alice")
    huge = "Content-Length: 99999999\r\n"
    cases = {
        # (request line, expected status, error code)
        "POST /api/agents/b1/logs": (413, "body_too_large"),
        "PATCH /api/agents/b1": (413, "body_too_large"),
        "PUT /api/agents": (413, "body_too_large"),  # a method the path lacks: its size is refused first, as before
        "POST /api/no-such-thing": (404, "not_found"),
        "BREW /api/agents": (405, "method_not_allowed"),
    }
    for line, (status, code) in cases.items():
        head = f"{line} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{huge}\r\n"
        answer = await raw_exchange(server, head.encode())  # the body never comes: the answer must not wait for it
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (line, answer[:200])
        assert f'"code": "{code}"'.encode() in answer, (line, answer[-200:])
        assert b"Connection: close" in answer, line
