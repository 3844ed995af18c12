"""Every error Sentra answers over HTTP is {"error": {"code", "message"}} as JSON, with the right status."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory, make_token, open_stream
from otlp_bodies import agent_json
from test_openapi import DOC, OPERATIONS, check_response, template_for

LONG_KEY = "k" * 256


@dataclass(frozen=True)
class Case:
    """One error path: the request, who sends it, and the status and code it must get."""

    name: str
    status: int
    code: str
    method: str
    path: str
    auth: str = "alice"
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    hold_stream: str | None = None


JSON_TYPE = {"Content-Type": "application/json"}
PROTOBUF_TYPE = {"Content-Type": "application/x-protobuf"}
OTLP_RUN = agent_json("run", "x")
SMALL_BODY = {"limits.max_body_size": 1024}
MCP_PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
NO_METRICS_ADDRESS = {"server.metrics_allow": []}

CASES = [
    # 400: the request is malformed
    Case("create-invalid-json", 400, "invalid_json", "POST", "/api/agents", content=b"{oops", headers=JSON_TYPE),
    Case("create-body-not-object", 400, "invalid_json", "POST", "/api/agents", json=[1]),
    Case("create-bad-agent-id", 400, "invalid_agent_id", "POST", "/api/agents", json={"id": "has space"}),
    Case("create-unknown-field", 400, "bad_request", "POST", "/api/agents", json={"colour": "red"}),
    Case("create-bad-labels", 400, "invalid_labels", "POST", "/api/agents", json={"labels": {"a": 1}}),
    Case("ingest-invalid-json", 400, "invalid_json", "POST", "/api/agents/run/logs", content=b"{oops",
         headers=JSON_TYPE),
    Case("ingest-invalid-ndjson-line", 400, "invalid_json", "POST", "/api/agents/run/logs",
         content=b'{"message": "ok"}\n{oops\n', headers={"Content-Type": "application/x-ndjson"}),
    Case("ingest-line-without-message", 400, "invalid_line", "POST", "/api/agents/run/logs",
         json=[{"message": "ok"}, {"level": "INFO"}]),
    Case("ingest-unknown-level", 400, "invalid_line", "POST", "/api/agents/run/logs",
         json={"message": "x", "level": "LOUD"}),
    Case("ingest-empty-batch", 400, "empty_batch", "POST", "/api/agents/run/logs", json=[]),
    Case("ingest-invalid-utf8", 400, "invalid_utf8", "POST", "/api/agents/run/logs", content=b"\xff\xfe",
         headers={"Content-Type": "text/plain"}),
    Case("ingest-unsupported-media-type", 400, "unsupported_media_type", "POST", "/api/agents/run/logs",
         content=b"\x89PNG", headers={"Content-Type": "image/png"}),
    Case("ingest-line-too-long", 400, "invalid_line", "POST", "/api/agents/run/logs", json={"message": "x" * 100},
         settings={"limits.max_line_size": 64}),
    Case("ingest-bad-agent-id", 400, "invalid_agent_id", "POST", "/api/agents/bad%20id/logs", json="x"),
    Case("ingest-idempotency-key-too-long", 400, "invalid_idempotency_key", "POST", "/api/agents/run/logs",
         json="x", headers={"Idempotency-Key": LONG_KEY}),
    Case("get-bad-agent-id", 400, "invalid_agent_id", "GET", "/api/agents/bad%20id"),
    Case("list-limit-not-integer", 400, "bad_request", "GET", "/api/agents?limit=abc"),
    Case("list-limit-zero", 400, "bad_request", "GET", "/api/agents?limit=0"),
    Case("list-unknown-status", 400, "bad_request", "GET", "/api/agents?status=paused"),
    Case("list-label-without-value", 400, "bad_request", "GET", "/api/agents?label=team"),
    Case("history-limit-not-integer", 400, "bad_request", "GET", "/api/agents/run/logs?limit=abc"),
    Case("history-unknown-level", 400, "bad_request", "GET", "/api/agents/run/logs?level=LOUD"),
    Case("history-unknown-format", 400, "bad_request", "GET", "/api/agents/run/logs?format=xml"),
    Case("history-after-and-before", 400, "bad_request", "GET", "/api/agents/run/logs?after=1&before=3"),
    Case("history-negative-after", 400, "bad_request", "GET", "/api/agents/run/logs?after=-1"),
    Case("patch-invalid-json", 400, "invalid_json", "PATCH", "/api/agents/run", content=b"{", headers=JSON_TYPE),
    Case("patch-unknown-field", 400, "bad_request", "PATCH", "/api/agents/run", json={"colour": "red"}),
    Case("patch-unknown-status", 400, "invalid_status", "PATCH", "/api/agents/run", json={"status": "paused"}),
    Case("stream-last-event-id-not-a-seq", 400, "bad_request", "GET", "/api/agents/run/logs/stream",
         headers={"Last-Event-ID": "abc"}),
    Case("stream-unknown-level", 400, "bad_request", "GET", "/api/agents/run/logs/stream?level=LOUD"),
    Case("seed001-stream-bad-agent-id", 400, "invalid_agent_id", "GET", "/api/v1/stream-logs/request/a%20b"),
    Case("streams-without-agents", 400, "bad_request", "GET", "/api/streams"),
    Case("streams-bad-cursor", 400, "bad_request", "GET", "/api/streams?agent=run",
         headers={"Last-Event-ID": "garbage"}),
    Case("ticket-without-agent", 400, "bad_request", "POST", "/api/stream-tickets", json={}),
    Case("delete-bad-agent-id", 400, "invalid_agent_id", "DELETE", "/api/agents/bad%20id"),
    # 401: no valid token
    Case("list-without-token", 401, "not_authenticated", "GET", "/api/agents", auth="none"),
    Case("ingest-without-token", 401, "not_authenticated", "POST", "/api/agents/run/logs", json="x", auth="none"),
    Case("stream-without-token", 401, "not_authenticated", "GET", "/api/agents/run/logs/stream", auth="none"),
    Case("create-without-token", 401, "not_authenticated", "POST", "/api/agents", json={}, auth="none"),
    Case("get-without-token", 401, "not_authenticated", "GET", "/api/agents/run", auth="none"),
    Case("patch-without-token", 401, "not_authenticated", "PATCH", "/api/agents/run", json={}, auth="none"),
    Case("delete-without-token", 401, "not_authenticated", "DELETE", "/api/agents/run", auth="none"),
    Case("history-without-token", 401, "not_authenticated", "GET", "/api/agents/run/logs", auth="none"),
    Case("seed001-stream-without-token", 401, "not_authenticated", "GET", "/api/v1/stream-logs/request/run",
         auth="none"),
    Case("streams-without-token", 401, "not_authenticated", "GET", "/api/streams?agent=run", auth="none"),
    Case("ticket-without-token", 401, "not_authenticated", "POST", "/api/stream-tickets", json={"agent": "run"},
         auth="none"),
    Case("garbage-token", 401, "invalid_token", "GET", "/api/agents", auth="garbage"),
    Case("token-with-wrong-signature", 401, "invalid_token", "GET", "/api/agents", auth="wrong-secret"),
    Case("expired-token", 401, "token_expired", "GET", "/api/agents", auth="expired"),
    Case("basic-auth-instead-of-bearer", 401, "invalid_token", "GET", "/api/agents", auth="basic"),
    Case("garbage-token-in-query", 401, "invalid_token", "GET", "/api/agents/run/logs/stream?token=garbage",
         auth="none"),
    Case("metrics-without-token-from-other-address", 401, "not_authenticated", "GET", "/metrics", auth="none",
         settings=NO_METRICS_ADDRESS),
    # 403: authenticated, but not allowed
    Case("other-user-reads-agent", 403, "not_owner", "GET", "/api/agents/run", auth="bob"),
    Case("other-user-reads-history", 403, "not_owner", "GET", "/api/agents/run/logs", auth="bob"),
    Case("other-user-streams", 403, "not_owner", "GET", "/api/agents/run/logs/stream", auth="bob"),
    Case("other-user-streams-seed001", 403, "not_owner", "GET", "/api/v1/stream-logs/request/run", auth="bob"),
    Case("other-user-streams-many", 403, "not_owner", "GET", "/api/streams?agent=run", auth="bob"),
    Case("other-user-ingests", 403, "not_owner", "POST", "/api/agents/run/logs", json="x", auth="bob"),
    Case("other-user-patches", 403, "not_owner", "PATCH", "/api/agents/run", json={"name": "x"}, auth="bob"),
    Case("other-user-deletes", 403, "not_owner", "DELETE", "/api/agents/run", auth="bob"),
    Case("other-user-asks-ticket", 403, "not_owner", "POST", "/api/stream-tickets", json={"agent": "run"},
         auth="bob"),
    Case("read-only-token-ingests", 403, "insufficient_scope", "POST", "/api/agents/run/logs", json="x",
         auth="read-only"),
    Case("read-only-token-creates-agent", 403, "insufficient_scope", "POST", "/api/agents", json={},
         auth="read-only"),
    Case("read-only-token-patches", 403, "insufficient_scope", "PATCH", "/api/agents/run",
         json={"status": "completed"}, auth="read-only"),
    Case("read-only-token-deletes", 403, "insufficient_scope", "DELETE", "/api/agents/run", auth="read-only"),
    Case("write-only-token-reads-history", 403, "insufficient_scope", "GET", "/api/agents/run/logs",
         auth="write-only"),
    Case("write-only-token-lists-agents", 403, "insufficient_scope", "GET", "/api/agents", auth="write-only"),
    Case("ticket-ingests", 403, "insufficient_scope", "POST", "/api/agents/run/logs", json="x", auth="ticket"),
    Case("ticket-reads-another-agent", 403, "not_owner", "GET", "/api/agents/done", auth="ticket"),
    Case("ticket-asks-ticket", 403, "insufficient_scope", "POST", "/api/stream-tickets", json={"agent": "run"},
         auth="ticket"),
    Case("metrics-without-admin-from-other-address", 403, "forbidden", "GET", "/metrics",
         settings=NO_METRICS_ADDRESS),
    # 404: no such agent or path
    Case("get-unknown-agent", 404, "agent_not_found", "GET", "/api/agents/nope"),
    Case("history-of-unknown-agent", 404, "agent_not_found", "GET", "/api/agents/nope/logs"),
    Case("stream-of-unknown-agent", 404, "agent_not_found", "GET", "/api/agents/nope/logs/stream"),
    Case("streams-of-unknown-agent", 404, "agent_not_found", "GET", "/api/streams?agent=nope"),
    Case("patch-unknown-agent", 404, "agent_not_found", "PATCH", "/api/agents/nope", json={"name": "x"}),
    Case("delete-unknown-agent", 404, "agent_not_found", "DELETE", "/api/agents/nope"),
    Case("ticket-for-unknown-agent", 404, "agent_not_found", "POST", "/api/stream-tickets", json={"agent": "nope"}),
    Case("unknown-api-path", 404, "not_found", "GET", "/api/nothing-here"),
    Case("unknown-api-path-post", 404, "not_found", "POST", "/api/agents/run/logs/extra", json="x"),
    # 405: the path exists, the method does not
    Case("put-agents", 405, "method_not_allowed", "PUT", "/api/agents", json={}),
    Case("delete-agents", 405, "method_not_allowed", "DELETE", "/api/agents"),
    Case("post-healthz", 405, "method_not_allowed", "POST", "/healthz"),
    Case("put-logs", 405, "method_not_allowed", "PUT", "/api/agents/run/logs", json="x"),
    Case("post-stream", 405, "method_not_allowed", "POST", "/api/agents/run/logs/stream"),
    Case("get-stream-tickets", 405, "method_not_allowed", "GET", "/api/stream-tickets"),
    # 409: conflicts with the agent's state
    Case("create-existing-id", 409, "agent_exists", "POST", "/api/agents", json={"id": "run"}),
    Case("ingest-into-finished-agent", 409, "agent_finished", "POST", "/api/agents/done/logs", json="late"),
    Case("reopen-finished-agent", 409, "agent_finished", "PATCH", "/api/agents/done", json={"status": "running"}),
    # 413: above a configured limit
    Case("ingest-body-too-large", 413, "body_too_large", "POST", "/api/agents/run/logs", content=b"x" * 5000,
         headers={"Content-Type": "text/plain"}, settings=SMALL_BODY),
    Case("ingest-too-many-lines", 413, "too_many_lines", "POST", "/api/agents/run/logs", json=["a", "b", "c"],
         settings={"limits.max_lines_per_request": 2}),
    # 429: a rate or connection limit
    Case("ingest-rate-limited", 429, "rate_limited", "POST", "/api/agents/run/logs", json=["a", "b", "c"],
         settings={"limits.ingest_rate": 2}),
    Case("too-many-streams", 429, "too_many_streams", "GET", "/api/agents/run/logs/stream",
         settings={"limits.max_streams_per_user": 1}, hold_stream="/api/agents/run/logs/stream"),
    Case("too-many-seed001-streams", 429, "too_many_streams", "GET", "/api/v1/stream-logs/request/run",
         settings={"limits.max_streams_per_user": 1}, hold_stream="/api/agents/run/logs/stream"),
    Case("too-many-multi-agent-streams", 429, "too_many_streams", "GET", "/api/streams?agent=run",
         settings={"limits.max_streams_per_user": 1}, hold_stream="/api/agents/run/logs/stream"),
    Case("otlp-undecodable-protobuf", 400, "invalid_otlp", "POST", "/v1/logs", content=b"\xff\xff",
         headers=PROTOBUF_TYPE),
    Case("otlp-without-token", 401, "not_authenticated", "POST", "/v1/logs", json=OTLP_RUN, auth="none"),
    Case("read-only-token-exports-otlp", 403, "insufficient_scope", "POST", "/v1/logs", json=OTLP_RUN,
         auth="read-only"),
    Case("other-user-exports-otlp", 403, "not_owner", "POST", "/v1/logs", json=OTLP_RUN, auth="bob"),
    Case("otlp-into-finished-agent", 409, "agent_finished", "POST", "/v1/logs", json=agent_json("done", "late")),
    Case("otlp-body-too-large", 413, "body_too_large", "POST", "/v1/logs", content=b"x" * 5000,
         headers=PROTOBUF_TYPE, settings=SMALL_BODY),
    Case("otlp-not-otlp", 415, "unsupported_media_type", "POST", "/v1/logs", content=b"x",
         headers={"Content-Type": "text/plain"}),
    Case("otlp-rate-limited", 429, "rate_limited", "POST", "/v1/logs", json=agent_json("run", "a", "b", "c"),
         settings={"limits.ingest_rate": 2}),
    Case("mcp-without-token", 401, "not_authenticated", "POST", "/mcp", json=MCP_PING, auth="none"),
    Case("write-only-token-uses-mcp", 403, "insufficient_scope", "POST", "/mcp", json=MCP_PING, auth="write-only"),
    Case("mcp-from-foreign-origin", 403, "forbidden_origin", "POST", "/mcp", json=MCP_PING,
         headers={"Origin": "http://evil.example:8765"}),
    Case("mcp-body-too-large", 413, "body_too_large", "POST", "/mcp", content=b"x" * 5000, headers=JSON_TYPE,
         settings=SMALL_BODY),
    Case("session-no-token", 401, "not_authenticated", "GET", "/api/session", auth="none"),
    Case("sign-in-not-json", 400, "unsupported_media_type", "POST", "/api/session", auth="none",
         content=b"token=abc", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("sign-in-expired-token", 401, "token_expired", "POST", "/api/session", auth="expired"),
    Case("agent-events-bad-label", 400, "bad_request", "GET", "/api/agent-events?label=oops"),
    Case("agent-events-no-token", 401, "not_authenticated", "GET", "/api/agent-events", auth="none"),
    Case("agent-events-write-only", 403, "insufficient_scope", "GET", "/api/agent-events", auth="write-only"),
    Case("agent-events-too-many-streams", 429, "too_many_streams", "GET", "/api/agent-events",
         settings={"limits.max_streams_per_user": 1}, hold_stream="/api/agents/run/logs/stream"),
    Case("search-without-q", 400, "invalid_query", "GET", "/api/search"),
    Case("search-q-without-words", 400, "invalid_query", "GET", "/api/search?q=--"),
    Case("search-limit-too-large", 400, "bad_request", "GET", "/api/search?q=hello&limit=1001"),
    Case("search-bad-cursor", 400, "invalid_cursor", "GET", "/api/search?q=hello&cursor=x"),
    Case("search-bad-since", 400, "bad_request", "GET", "/api/search?q=hello&since=yesterday"),
    Case("search-bad-level", 400, "bad_request", "GET", "/api/search?q=hello&level=LOUD"),
    Case("search-without-token", 401, "not_authenticated", "GET", "/api/search?q=hello", auth="none"),
    Case("write-only-token-searches", 403, "insufficient_scope", "GET", "/api/search?q=hello", auth="write-only"),
    Case("other-user-searches-agent", 403, "not_owner", "GET", "/api/search?q=hello&agent=run", auth="bob"),
    Case("search-in-unknown-agent", 404, "agent_not_found", "GET", "/api/search?q=hello&agent=nope"),
    Case("search-without-index", 503, "search_off", "GET", "/api/search?q=hello", settings={"search.index": False}),
    Case("webhooks-without-token", 401, "not_authenticated", "GET", "/api/webhooks", auth="none"),
    Case("write-only-token-lists-webhooks", 403, "insufficient_scope", "GET", "/api/webhooks", auth="write-only"),
    Case("webhook-bad-url", 400, "invalid_url", "POST", "/api/webhooks",
         json={"url": "ftp://x", "events": ["agent.failed"]}),
    Case("webhook-create-without-token", 401, "not_authenticated", "POST", "/api/webhooks", auth="none", json={}),
    Case("write-only-token-creates-webhook", 403, "insufficient_scope", "POST", "/api/webhooks", auth="write-only",
         json={"url": "http://127.0.0.1/", "events": ["agent.failed"]}),
    *[Case(f"webhook-{method.lower()}{tail.replace('/', '-')}-{name}", status, code, method,
           f"/api/webhooks/{hook}{tail}", auth=auth, json={"format": "slack"} if method == "PATCH" else None)
      for method, tail in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries"))
      for name, status, code, hook, auth in (
          ("bad-id", 400, "invalid_webhook_id", "nope", "alice"),
          ("without-token", 401, "not_authenticated", "wh_" + "0" * 24, "none"),
          ("write-only-token", 403, "insufficient_scope", "wh_" + "0" * 24, "write-only"),
          ("unknown", 404, "webhook_not_found", "wh_" + "0" * 24, "alice"),
      )],
    Case("attachment-without-name", 400, "invalid_name", "POST", "/api/agents/run/attachments", content=b"x"),
    Case("attachment-empty", 400, "empty_attachment", "POST", "/api/agents/run/attachments?name=a", content=b""),
    Case("attachment-name-with-control", 400, "invalid_name", "POST", "/api/agents/run/attachments?name=%13a",
         content=b"x"),
    Case("attachment-name-too-long", 400, "invalid_name", "POST",
         f"/api/agents/run/attachments?name=%13{'a' * 255}", content=b"x"),
    Case("attachment-without-token", 401, "not_authenticated", "POST", "/api/agents/run/attachments?name=a",
         content=b"x", auth="none"),
    Case("other-user-attaches", 403, "not_owner", "POST", "/api/agents/run/attachments?name=a", content=b"x",
         auth="bob"),
    Case("attach-to-finished-agent", 409, "agent_finished", "POST", "/api/agents/done/attachments?name=a",
         content=b"x"),
    Case("attachment-too-large", 413, "body_too_large", "POST", "/api/agents/run/attachments?name=a",
         content=b"x" * 5000, settings={"limits.max_attachment_size": 1024}),
    Case("attachment-rate-limited", 429, "rate_limited", "POST", "/api/agents/run/attachments?name=a",
         content=b"x", settings={"limits.ingest_rate": 2}),
    *[Case(f"attachment-read-{name}", status, code, "GET", f"/api/agents/{agent}/attachments/{'0' * 32}", auth=auth)
      for name, status, code, agent, auth in (
          ("bad-agent-id", 400, "invalid_agent_id", "bad%20id", "alice"),
          ("without-token", 401, "not_authenticated", "run", "none"),
          ("other-user", 403, "not_owner", "run", "bob"),
          ("unknown", 404, "attachment_not_found", "run", "alice"),
      )],
    *[Case(f"volume-{name}", status, code, "GET", f"/api/agents/{agent}/volume{query}", auth=auth)
      for name, status, code, agent, query, auth in (
          ("too-many-buckets", 400, "bad_request", "run", "?buckets=501", "alice"),
          ("until-before-since", 400, "bad_request", "run", "?since=20&until=10", "alice"),
          ("without-token", 401, "not_authenticated", "run", "", "none"),
          ("other-user", 403, "not_owner", "run", "", "bob"),
          ("unknown-agent", 404, "agent_not_found", "nobody", "", "alice"),
      )],
    *[Case(f"stop-{name}", status, code, "POST", f"/api/agents/{agent}/stop", auth=auth)
      for name, status, code, agent, auth in (
          ("bad-agent-id", 400, "invalid_agent_id", "bad%20id", "alice"),
          ("without-token", 401, "not_authenticated", "run", "none"),
          ("other-user", 403, "not_owner", "run", "bob"),
          ("unknown-agent", 404, "agent_not_found", "nobody", "alice"),
          ("finished-agent", 409, "agent_finished", "done", "alice"),
      )],
    Case("share-bad-ttl", 400, "invalid_ttl", "POST", "/api/agents/run/share", json={"ttl": "soon"}),
    *[Case(f"share-{name}", status, code, "POST", f"/api/agents/{agent}/share", json={"ttl": "1h"}, auth=auth)
      for name, status, code, agent, auth in (
          ("without-token", 401, "not_authenticated", "run", "none"),
          ("other-user", 403, "not_owner", "run", "bob"),
          ("unknown-agent", 404, "agent_not_found", "nobody", "alice"),
      )],
    *[Case(f"shares-{name}", status, code, "GET", f"/api/agents/{agent}/shares", auth=auth)
      for name, status, code, agent, auth in (
          ("bad-agent-id", 400, "invalid_agent_id", "bad%20id", "alice"),
          ("without-token", 401, "not_authenticated", "run", "none"),
          ("other-user", 403, "not_owner", "run", "bob"),
          ("unknown-agent", 404, "agent_not_found", "nobody", "alice"),
      )],
    *[Case(f"revoke-share-{name}", status, code, "DELETE", f"/api/agents/{agent}/share/{'0' * 32}", auth=auth)
      for name, status, code, agent, auth in (
          ("bad-agent-id", 400, "invalid_agent_id", "bad%20id", "alice"),
          ("without-token", 401, "not_authenticated", "run", "none"),
          ("other-user", 403, "not_owner", "run", "bob"),
          ("unknown", 404, "share_not_found", "run", "alice"),
      )],
]  # fmt: skip


async def prepare(server: RunningServer) -> None:
    """Alice owns `run` (running, one line) and `done` (completed)."""
    async with server.client("alice") as alice:
        for agent_id in ("run", "done"):
            response = await alice.post(f"/api/agents/{agent_id}/logs", json="hello")
            assert response.status_code == 200, response.text
        assert (await alice.patch("/api/agents/done", json={"status": "completed"})).status_code == 200


async def credentials(server: RunningServer, auth: str) -> dict[str, str]:
    """The Authorization header a case sends."""
    tokens = {
        "alice": server.token("alice"),
        "bob": server.token("bob"),
        "garbage": "not-a-jwt",
        "wrong-secret": make_token("alice", secret="another-secret-that-is-long-enough-0123456789"),
        "expired": make_token("alice", exp=1_000_000_000),
        "read-only": make_token("alice", scope="logs:read"),
        "write-only": make_token("alice", scope="logs:write"),
    }
    if auth == "none":
        return {}
    if auth == "basic":
        return {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    if auth == "ticket":
        async with server.client("alice") as alice:
            response = await alice.post("/api/stream-tickets", json={"agent": "run"})
        tokens["ticket"] = response.json()["token"]
    return {"Authorization": f"Bearer {tokens[auth]}"}


async def send(server: RunningServer, case: Case) -> httpx.Response:
    """Send the case's request (holding a stream open first if it asks) and read the whole answer."""
    headers = {**await credentials(server, case.auth), **case.headers}
    async with AsyncExitStack() as stack, server.client(None) as client:
        if case.hold_stream is not None:
            held = await stack.enter_async_context(open_stream(client, case.hold_stream, headers=headers))
            assert held.response.status_code == 200
            assert await held.next() is not None
        request = client.build_request(case.method, case.path, headers=headers, json=case.json, content=case.content)
        response = await asyncio.wait_for(client.send(request, stream=True), 10)
        await asyncio.wait_for(response.aread(), 10)
        await response.aclose()
        return response


@pytest.mark.parametrize("case", CASES, ids=[f"{c.status}-{c.name}" for c in CASES])
async def test_error_is_json_with_code_and_message(start_server: ServerFactory, case: Case) -> None:
    server = await start_server(**case.settings)
    await prepare(server)
    response = await send(server, case)
    assert response.status_code == case.status, response.text
    assert response.headers["Content-Type"].split(";")[0] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"]
    code, message = body["error"]["code"], body["error"]["message"]
    assert code == case.code, message
    assert isinstance(message, str) and len(message.split()) >= 2, f"not a human message: {message!r}"
    if case.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    if case.status == 429:
        assert int(response.headers["Retry-After"]) >= 1
    if code not in ("not_found", "method_not_allowed"):
        check_response(response)  # the status is documented for this operation, the body matches Error


def test_every_documented_error_status_has_a_case_here() -> None:
    routed = [case for case in CASES if case.code not in ("not_found", "method_not_allowed")]
    reached = {(case.method.lower(), template_for(case.path.split("?")[0]), str(case.status)) for case in routed}
    # 503 and 507 need a dead database or a full disk: not reachable from a test over HTTP.
    documented = {
        (method, path, status)
        for method, path in OPERATIONS
        for status, answer in DOC["paths"][path][method]["responses"].items()
        if status.startswith("4") and "$ref" in answer  # Error-shaped: POST /mcp's 400 is a JSON-RPC error
    }
    assert documented - reached == set()


async def test_oversized_json_body_on_other_routes_is_a_json_413(start_server: ServerFactory) -> None:
    server = await start_server(**SMALL_BODY)
    async with server.client("alice") as alice:
        response = await alice.post("/api/agents", json={"id": "run", "name": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["error"]["message"]


async def test_method_not_allowed_names_the_allowed_methods(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        response = await alice.put("/api/agents", json={})
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
