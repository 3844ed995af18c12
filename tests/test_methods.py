"""Every method on every route answers as documented: OPTIONS is 204 with Allow (and the CORS grant for a listed
origin only), HEAD is GET without its body, any other method a path does not answer is a JSON 405 naming the ones
it does, and a path Sentra does not serve is a 404 whatever the method."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import RunningServer, ServerFactory
from test_openapi import DOC

from sentra.api.routes import ROUTES

LISTED = "https://app.example"
UNLISTED = "https://elsewhere.example"
CORS_REQUEST_HEADERS = {"Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"}
# Methods a client may send that no route answers, beside every route's missing ones.
STRANGERS = ("PUT", "TRACE", "BREW")
METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

# One request path for each route of the route table.
SAMPLES = {
    "/healthz": "/healthz",
    "/metrics": "/metrics",
    "/api/openapi.json": "/api/openapi.json",
    "/api/agents": "/api/agents",
    "/api/agents/{agent_id}": "/api/agents/m1",
    "/api/agents/{agent_id}/logs": "/api/agents/m1/logs",
    "/api/agents/{agent_id}/logs/stream": "/api/agents/m1/logs/stream",
    "/api/agents/{agent_id}/volume": "/api/agents/m1/volume",
    "/api/agents/{agent_id}/attachments": "/api/agents/m1/attachments?name=notes.txt",
    "/api/agents/{agent_id}/attachments/{attachment_id}": "/api/agents/m1/attachments/0123456789abcdef0123456789abcdef",
    "/api/agents/{agent_id}/stop": "/api/agents/m1/stop",
    "/api/agents/{agent_id}/share": "/api/agents/m1/share",
    "/api/agents/{agent_id}/shares": "/api/agents/m1/shares",
    "/api/agents/{agent_id}/share/{share_id}": "/api/agents/m1/share/sh_0123456789abcdef0123456789abcdef",
    "/api/v1/stream-logs/request/{agent_id}": "/api/v1/stream-logs/request/m1",
    "/api/streams": "/api/streams?agent=m1",
    "/api/stream-tickets": "/api/stream-tickets",
    "/api/session": "/api/session",
    "/api/agent-events": "/api/agent-events",
    "/api/search": "/api/search?q=hello",
    "/api/webhooks": "/api/webhooks",
    "/api/webhooks/{hook_id}": "/api/webhooks/wh_000000000000000000000000",
    "/api/webhooks/{hook_id}/test": "/api/webhooks/wh_000000000000000000000000/test",
    "/api/webhooks/{hook_id}/deliveries": "/api/webhooks/wh_000000000000000000000000/deliveries",
    "/v1/logs": "/v1/logs",
    "/mcp": "/mcp",
    "/api/{rest:path}": "/api/no-such-thing",
    "/{url:path}": "/sentra.js",
}
NOT_SERVED = "/api/no-such-thing"


def documented_methods(path: str) -> list[str]:
    """What a path answers: the document's methods for it (GET, HEAD and OPTIONS for a viewer file), HEAD wherever
    GET is, and OPTIONS; in the order of Allow."""
    path = path.partition("?")[0]
    for template, item in DOC["paths"].items():
        parts, wanted = template.split("/"), path.split("/")
        if len(parts) == len(wanted) and all(p == w or p.startswith("{") for p, w in zip(parts, wanted, strict=True)):
            methods = {method.upper() for method in item if method.upper() in METHODS}
            methods |= {"HEAD", "OPTIONS"} if "GET" in methods else {"OPTIONS"}
            return [method for method in METHODS if method in methods]
    assert not path.startswith("/api/"), f"{path} is not documented"
    return ["GET", "HEAD", "OPTIONS"]  # a viewer file


@pytest.fixture
async def cors_server(start_server: ServerFactory) -> RunningServer:
    """A server with one listed origin, where alice owns the finished agent m1."""
    server = await start_server(**{"server.cors_origins": [LISTED]})
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/m1/logs", json=["one", "two"])).status_code == 200
        assert (await alice.patch("/api/agents/m1", json={"status": "completed"})).status_code == 200
    return server


def test_the_samples_cover_every_route_of_the_app() -> None:
    assert {route.template for route in ROUTES} == set(SAMPLES)


async def test_options_answers_every_route_with_allow_and_grants_cors_only_to_a_listed_origin(
    cors_server: RunningServer,
) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with httpx.AsyncClient(base_url=cors_server.url, timeout=10) as anonymous:
        for path in SAMPLES.values():
            if path == NOT_SERVED:
                continue
            allow = ", ".join(documented_methods(path))
            listed = await anonymous.options(path, headers={"Origin": LISTED, **preflight})
            assert listed.status_code == 204 and listed.content == b"", (path, listed.text)
            assert listed.headers["allow"] == allow, path
            assert listed.headers["access-control-allow-origin"] == LISTED, path
            assert listed.headers["access-control-allow-methods"] == allow, path
            granted = {name.strip() for name in listed.headers["access-control-allow-headers"].split(",")}
            assert granted == CORS_REQUEST_HEADERS, path
            assert int(listed.headers["access-control-max-age"]) > 0
            assert "Origin" in listed.headers["vary"]
            for headers in ({"Origin": UNLISTED, **preflight}, {}):
                plain = await anonymous.options(path, headers=headers)
                assert plain.status_code == 204 and plain.headers["allow"] == allow, (path, headers)
                assert not [name for name in plain.headers if name.startswith("access-control-")], (path, headers)


async def test_a_method_a_route_does_not_answer_is_a_json_405_naming_those_it_does(
    cors_server: RunningServer,
) -> None:
    refused = 0
    async with cors_server.client("alice") as alice:
        for path in SAMPLES.values():
            if path == NOT_SERVED:
                continue
            allow = documented_methods(path)
            for method in dict.fromkeys([*METHODS, *STRANGERS]):
                if method in allow:
                    continue
                answer = await alice.request(method, path, headers={"Origin": LISTED})
                assert answer.status_code == 405, (method, path, answer.text)
                assert answer.headers["allow"] == ", ".join(allow), (method, path)
                assert answer.headers["access-control-allow-origin"] == LISTED
                if method == "HEAD":
                    assert answer.content == b"" and int(answer.headers["content-length"]) > 0
                    continue
                error = answer.json()["error"]
                assert error["code"] == "method_not_allowed"
                assert error["message"] == f"{method} is not a method of this path; it answers {', '.join(allow)}"
                refused += 1
    assert refused > 40


async def test_a_path_sentra_does_not_serve_is_a_json_404_whatever_the_method(cors_server: RunningServer) -> None:
    async with cors_server.client("alice") as alice:
        for method in dict.fromkeys([*METHODS, *STRANGERS]):
            answer = await alice.request(method, NOT_SERVED)
            assert answer.status_code == 404, (method, answer.text)
            assert "allow" not in answer.headers
            if method != "HEAD":
                assert answer.json()["error"] == {"code": "not_found", "message": f"no such path {NOT_SERVED!r}"}


async def test_head_answers_the_status_and_headers_of_get_without_a_body(cors_server: RunningServer) -> None:
    compared = ("content-type", "content-length", "cache-control", "content-disposition", "etag", "allow")
    async with cors_server.client("alice") as alice:
        for path in [*SAMPLES.values(), "/api/agents/m1/logs?format=text", "/api/agents/none", "/api/streams"]:
            if path == NOT_SERVED or "GET" not in documented_methods(path):
                continue
            async with alice.stream("GET", path) as got:
                # A stream's GET goes on: its status and headers are what HEAD is held to.
                status, headers = got.status_code, got.headers
            head = await alice.head(path)
            assert head.status_code == status, (path, head.status_code, status)
            assert head.content == b""
            for name in compared:
                if name == "content-length" and "content-length" not in headers:
                    continue  # the streamed answers (event streams, downloads) have none, and HEAD makes none up
                assert head.headers.get(name) == headers.get(name), (path, name)
        # Every HEAD of a stream ended with its headers: nothing stays open (the GETs close as the server sees
        # their connections go), and the connection serves on.
        for _ in range(50):
            health = await alice.get("/healthz")
            if health.json()["open_streams"] == 0:
                break
            await asyncio.sleep(0.1)
    assert health.json()["open_streams"] == 0


async def test_head_of_an_error_answer_has_the_length_of_its_json_body(cors_server: RunningServer) -> None:
    async with cors_server.client("bob") as bob:
        for path in ("/api/agents/m1", "/api/agents/m1/logs/stream", "/api/agents/m1/logs"):
            got = await bob.get(path)
            head = await bob.head(path)
            assert got.status_code == head.status_code == 403, path
            assert head.content == b"" and head.headers["content-length"] == str(len(got.content)), path
