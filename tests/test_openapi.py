"""The OpenAPI document at /api/openapi.json is true: every route is in it, and real answers match it."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from conftest import RunningServer, SSEReader, open_stream
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sentra.api.openapi import openapi_document
from sentra.api.routes import ROUTES
from sentra.api.static import StaticHandler

DOC = openapi_document()
DOC_URI = "urn:sentra:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012)
)
METHODS = ("get", "post", "put", "patch", "delete")
OPERATIONS = [(method, path) for path, item in DOC["paths"].items() for method in item if method in METHODS]
# The webhooks' operations are checked against the document by tests/test_webhooks_api.py, on a server whose
# webhooks.allowed_targets lets them reach a loopback receiver; this module's server refuses such targets. The
# attachments' (whose paths hold an id only an upload gives) by tests/test_attachments.py, and the share links'
# (whose revocation needs one made first) by tests/test_share.py.
EXAMPLE_OPERATIONS = [
    (method, path)
    for method, path in OPERATIONS
    if not path.startswith("/api/webhooks") and "/attachments" not in path and "/share/" not in path
]


# ---- reading the document ----------------------------------------------------------------------


def pointer(*parts: str) -> str:
    """A JSON pointer into the document."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def follow(ptr: str) -> tuple[str, Any]:
    """The pointer and the object at it, after following a $ref that the object is."""
    node: Any = DOC
    for part in ptr.split("/")[1:]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and "$ref" in node:
        return follow(node["$ref"].removeprefix("#"))
    return ptr, node


def template_for(path: str) -> str:
    """The documented path template a concrete request path falls under."""
    for template in DOC["paths"]:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return template
    raise AssertionError(f"{path} is not under any documented path")


def validator(ptr: str) -> Draft202012Validator:
    """A validator for the schema at `ptr`, resolving every #/components/... reference in it."""
    return Draft202012Validator(
        {"$ref": f"{DOC_URI}#{ptr}"}, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def assert_valid(instance: Any, ptr: str) -> None:
    """Fail with every validation error if `instance` does not match the schema at `ptr`."""
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(ptr).iter_errors(instance)]
    assert not errors, f"does not match {ptr}:\n" + "\n".join(errors)


def check_request_body(method: str, path: str, body: Any) -> None:
    """A JSON body the client sends matches the documented request body."""
    base = pointer("paths", template_for(path), method, "requestBody", "content", "application/json", "schema")
    assert_valid(body, base)


def response_doc(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The documented response object (and its pointer) for a real response's status."""
    request = response.request
    template = template_for(request.url.path)
    method = request.method.lower()
    responses = DOC["paths"][template][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{request.method} {template} answered {status}, not documented: {sorted(responses)}"
    return follow(pointer("paths", template, method, "responses", status))


def check_headers(response: httpx.Response) -> dict[str, Any]:
    """The response's status and required headers are documented; returns the documented content."""
    _, documented = response_doc(response)
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"documented header {name} missing"
    return dict(documented.get("content", {}))


def check_response(response: httpx.Response) -> Any:
    """The status, headers, media type and JSON body match the document; returns the decoded body."""
    content = check_headers(response)
    if not content:
        assert response.content == b""
        return None
    media = response.headers["Content-Type"].split(";")[0].strip()
    assert media in content, f"Content-Type {media} is not documented: {sorted(content)}"
    if media != "application/json":
        return response.text
    ptr, _ = response_doc(response)
    body = response.json()
    assert_valid(body, ptr + pointer("content", media, "schema"))
    return body


async def check_events(reader: SSEReader, count: int | None = None) -> list[Any]:
    """Read events (all until the server closes, or `count`) and validate each data against x-event-data."""
    ptr, _ = response_doc(reader.response)
    events: list[Any] = []
    while count is None or len(events) < count:
        event = await reader.next()
        if event is None:
            break
        data = event.json()
        assert_valid(data, ptr + pointer("content", "text/event-stream", "x-event-data"))
        events.append(data)
    return events


# ---- the document itself -------------------------------------------------------------------------


async def test_openapi_json_is_served_as_an_openapi_3_1_document(server: RunningServer) -> None:
    async with server.client(None) as anonymous:
        response = await anonymous.get("/api/openapi.json")
    assert response.status_code == 200
    body = check_response(response)
    assert body["openapi"].startswith("3.1")
    assert body == json.loads(json.dumps(DOC))


def test_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate

    validate(DOC)


def test_every_route_of_the_app_is_documented_with_each_of_its_methods() -> None:
    served = {
        (method.lower(), route.template)
        for route in ROUTES
        for method, handler in route.methods.items()
        if handler is not StaticHandler  # the viewer's files are not the API
    }
    assert served == set(OPERATIONS)


# ---- real answers match the document ----------------------------------------------------------------

EXAMPLES: dict[tuple[str, str], tuple[str, Any]] = {
    # A request that succeeds, for each documented operation, on a server where alice owns run-1.
    ("post", "/api/agents"): ("/api/agents", {"id": "run-2", "name": "second", "labels": {"batch": "42"}}),
    ("patch", "/api/agents/{agent_id}"): ("/api/agents/run-1", {"name": "renamed", "labels": {"batch": "7"}}),
    ("post", "/api/agents/{agent_id}/logs"): ("/api/agents/run-1/logs", [{"message": "more", "level": "warn"}]),
    ("get", "/api/streams"): ("/api/streams?agent=run-1", None),
    ("get", "/api/search"): ("/api/search?q=first&agent=run-1&limit=1", None),
    ("post", "/api/stream-tickets"): ("/api/stream-tickets", {"agent": "run-1"}),
    ("post", "/mcp"): ("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ("post", "/v1/logs"): (
        "/v1/logs",
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [{"key": "sentra.agent.id", "value": {"stringValue": "run-1"}}]},
                    "scopeLogs": [{"logRecords": [{"severityNumber": 9, "body": {"stringValue": "from OTel"}}]}],
                }
            ]
        },
    ),
}


@pytest.mark.parametrize(
    ("method", "template"), EXAMPLE_OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in EXAMPLE_OPERATIONS]
)
async def test_example_request_to_every_operation_succeeds_as_documented(
    server: RunningServer, method: str, template: str
) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/run-1/logs", json=[{"message": "first"}, {"message": "second"}])
        path, body = EXAMPLES.get((method, template), (template.replace("{agent_id}", "run-1"), None))
        if body is not None:
            check_request_body(method, path.split("?")[0], body)
        operation = DOC["paths"][template][method]
        if "text/event-stream" in operation["responses"].get("200", {}).get("content", {}):
            async with open_stream(alice, path) as reader:
                assert reader.response.status_code == 200
                assert reader.response.headers["Content-Type"].startswith("text/event-stream")
                check_headers(reader.response)
                assert await check_events(reader, count=1)
            return
        response = await alice.request(method.upper(), path, json=body)
        assert response.status_code < 300, response.text
        check_response(response)


@pytest.mark.parametrize("template", list(DOC["paths"]))
async def test_methods_not_documented_for_a_path_are_refused_with_405(server: RunningServer, template: str) -> None:
    path = template.replace("{agent_id}", "run-1")
    async with server.client("alice") as alice:
        for method in METHODS:
            if method in DOC["paths"][template]:
                continue
            response = await alice.request(method.upper(), path)
            assert response.status_code == 405, f"{method.upper()} {path}: {response.status_code}"
            assert response.json()["error"]["code"] == "method_not_allowed"


async def test_agent_lifecycle_answers_match_documented_schemas(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        create = {"id": "job-1", "name": "nightly", "labels": {"team": "ml"}}
        check_request_body("post", "/api/agents", create)
        created = check_response(await alice.post("/api/agents", json=create))
        assert created["status"] == "running" and created["last_seq"] == 0
        generated = check_response(await alice.post("/api/agents"))
        assert generated["id"] != "job-1"
        listed = check_response(await alice.get("/api/agents", params={"label": "team=ml", "status": "running"}))
        assert [agent["id"] for agent in listed["agents"]] == ["job-1"]
        first_page = check_response(await alice.get("/api/agents", params={"limit": 1}))
        assert first_page["next_cursor"] is not None
        second_page = check_response(await alice.get("/api/agents", params={"cursor": first_page["next_cursor"]}))
        assert len(second_page["agents"]) == 1
        assert check_response(await alice.get("/api/agents/job-1"))["name"] == "nightly"
        patch = {"status": "failed", "reason": "out of memory"}
        check_request_body("patch", "/api/agents/job-1", patch)
        patched = check_response(await alice.patch("/api/agents/job-1", json=patch))
        assert (patched["status"], patched["reason"]) == ("failed", "out of memory")
        assert check_response(await alice.delete("/api/agents/job-1")) is None
    async with server.client(None) as anonymous:
        assert check_response(await anonymous.get("/healthz"))["status"] == "ok"


INGEST_BODIES: list[tuple[str, str, bytes]] = [
    ("application/json", "object", b'{"message": "one", "level": 40, "ts": 1700000000123, "user": "u1"}'),
    ("application/json", "array of objects and strings", b'[{"msg": "two", "levelname": "debug"}, "three"]'),
    ("application/json", "seed 001 publisher payload", b'{"agent_name": "a", "msg": "m", "request_id": "r", '
     b'"timestamp": "2025-01-01T00:00:00Z", "source": "logger"}'),
    ("application/x-ndjson", "ndjson", b'{"message": "four"}\n"five"\n'),
    ("text/plain", "text", b"six\nseven\n"),
]  # fmt: skip


async def test_ingest_in_every_format_and_history_match_documented_schemas(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        for media, _, payload in INGEST_BODIES:
            if media == "application/json":
                check_request_body("post", "/api/agents/run-1/logs", json.loads(payload))
            response = await alice.post("/api/agents/run-1/logs", content=payload, headers={"Content-Type": media})
            assert check_response(response)["accepted"] >= 1
        keyed = {"Idempotency-Key": "k-1"}
        first = check_response(await alice.post("/api/agents/run-1/logs", json="eight", headers=keyed))
        retry = await alice.post("/api/agents/run-1/logs", json="eight", headers=keyed)
        again = check_response(retry)
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert first == again == {"accepted": 1, "first_seq": 9, "last_seq": 9}

        page = check_response(await alice.get("/api/agents/run-1/logs", params={"limit": 4}))
        assert [line["seq"] for line in page["lines"]] == [1, 2, 3, 4] and page["next_after"] == 4
        before = check_response(await alice.get("/api/agents/run-1/logs", params={"before": 5, "limit": 2}))
        assert [line["seq"] for line in before["lines"]] == [3, 4] and before["next_before"] == 3
        errors = check_response(await alice.get("/api/agents/run-1/logs", params={"level": "error", "q": "one"}))
        assert [line["message"] for line in errors["lines"]] == ["one"]
        ndjson = check_response(await alice.get("/api/agents/run-1/logs", params={"format": "ndjson"}))
        for text in ndjson.splitlines():
            assert_valid(json.loads(text), "/components/schemas/Line")
        text = check_response(await alice.get("/api/agents/run-1/logs", params={"format": "text"}))
        assert text.splitlines()[0] == "one"


async def test_stream_events_of_every_stream_match_documented_schemas(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/run-1/logs", json=["a", {"message": "b", "source": "stderr"}])
        await alice.post("/api/agents/run-2/logs", json=["c"])
        for agent_id in ("run-1", "run-2"):
            await alice.patch(f"/api/agents/{agent_id}", json={"status": "completed"})
        async with open_stream(alice, "/api/agents/run-1/logs/stream") as reader:
            events = await check_events(reader)
        assert events[-1]["final"] is True and events[-1]["status"] == "completed"
        async with open_stream(alice, "/api/v1/stream-logs/request/run-1") as reader:
            events = await check_events(reader)
        assert [event["type"] for event in events] == ["log", "log", "end"]
        async with open_stream(alice, "/api/streams", agent=["run-1", "run-2"]) as reader:
            events = await check_events(reader)
        assert {event.get("agent") for event in events if event.get("final")} == {"run-1", "run-2"}
        done = {"Last-Event-ID": "2"}
        async with open_stream(alice, "/api/agents/run-1/logs/stream", headers=done) as reader:
            assert reader.response.status_code == 204
            check_headers(reader.response)
        ticket = check_response(await alice.post("/api/stream-tickets", json={"agent": "run-1"}))
        async with server.client(None) as anonymous, open_stream(anonymous, ticket["stream_url"]) as reader:
            assert reader.response.status_code == 200
            assert (await check_events(reader))[-1]["final"] is True


REFUSED_BODIES: list[tuple[str, str, Any]] = [
    ("post", "/api/agents", {"id": "x", "colour": "red"}),
    ("post", "/api/agents", {"id": "has space"}),
    ("post", "/api/agents", {"labels": {"a": 1}}),
    ("patch", "/api/agents/run-1", {"status": "paused"}),
    ("patch", "/api/agents/run-1", {"owner": "bob"}),
    ("post", "/api/agents/run-1/logs", []),
    ("post", "/api/agents/run-1/logs", [{"level": "INFO"}]),
    ("post", "/api/agents/run-1/logs", [{"message": 5}]),
    ("post", "/api/stream-tickets", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), REFUSED_BODIES, ids=[json.dumps(c[2]) for c in REFUSED_BODIES])
async def test_bodies_the_server_refuses_are_outside_the_documented_schema(
    server: RunningServer, method: str, path: str, body: Any
) -> None:
    base = pointer("paths", template_for(path), method, "requestBody", "content", "application/json", "schema")
    assert not validator(base).is_valid(body)
    async with server.client("alice") as alice:
        await alice.post("/api/agents/run-1/logs", json="exists")
        response = await alice.request(method.upper(), path, json=body)
    assert response.status_code == 400
    check_response(response)
