"""The OpenAPI 3.1 description of Sentra's HTTP API, built from small parts; tests keep it true. The schemas it
refers to are in sentra/schemas.py."""

from __future__ import annotations

from typing import Any

from sentra import __version__
from sentra.api import openapi_attachments as attachments
from sentra.api import openapi_runcontrol as runcontrol
from sentra.api import openapi_webhooks as webhooks
from sentra.schemas import (
    AGENT_ID,
    JSON,
    NDJSON,
    SSE,
    STATUS,
    TEXT,
    Schema,
    event_schemas,
    obj,
    ref,
    request_schemas,
    resource_schemas,
    t,
)

ERRORS: dict[str, tuple[str, str]] = {
    # status: (component name, description)
    "400": ("BadRequest", "Malformed: bad JSON, an invalid id, parameter or field (the message says which)."),
    "401": ("Unauthorized", "No valid token: missing, malformed, expired, revoked or badly signed."),
    "403": ("Forbidden", "Authenticated, but not the agent's owner or lacking the scope."),
    "404": ("NotFound", "No such agent."),
    "409": ("Conflict", "The agent exists already, or it has finished."),
    "413": ("PayloadTooLarge", "The body or its number of lines is above the configured limit."),
    "415": ("UnsupportedMediaType", "The body's Content-Type or Content-Encoding is not one the endpoint reads."),
    "429": ("TooManyRequests", "A rate or open-stream limit was hit; Retry-After says when to come back."),
    "503": ("Unavailable", "The database does not answer, or the server is shutting down."),
    "507": ("StorageFull", "The disk is full; nothing was written."),
}


def header(description: str, schema: Schema | None = None, *, required: bool = True) -> Schema:
    """A response header, required unless said."""
    return {"description": description, "schema": schema or t("string"), "required": required}


def error_responses() -> dict[str, Schema]:
    """One reusable response per error status, all with the Error body, and a default."""
    content = {JSON: {"schema": ref("Error")}}
    answers: dict[str, Schema] = {name: {"description": text, "content": content} for name, text in ERRORS.values()}
    answers["Unauthorized"]["headers"] = {"WWW-Authenticate": header('Bearer realm="sentra", error="…"')}
    answers["TooManyRequests"]["headers"] = {"Retry-After": header("Seconds to wait.", t("integer"))}
    answers["Error"] = {"description": "Any other error, in the same shape.", "content": content}
    return answers


def json_response(description: str, schema: Schema, headers: dict[str, Schema] | None = None) -> Schema:
    """A JSON response."""
    answer: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def stream_response(event: str) -> Schema:
    """A Server-Sent Events response; `x-event-data` is the schema of each event's data."""
    return {
        "description": f"Server-Sent Events whose data is a {event}.",
        "headers": {"Cache-Control": header("no-cache"), "X-Accel-Buffering": header("no")},
        "content": {SSE: {"schema": t("string"), "x-event-data": ref(event)}},
    }


NO_MORE = {"description": "The agent finished and nothing follows Last-Event-ID: EventSource stops reconnecting."}


def param(name: str, where: str, schema: Schema, description: str, **extra: Any) -> Schema:
    """A parameter; repeatable query parameters are arrays exploded in form style."""
    if schema.get("type") == "array":
        extra = {"style": "form", "explode": True, **extra}
    return {"name": name, "in": where, "schema": schema, "description": description, **extra}


def body(schema: Schema, *, required: bool = True) -> Schema:
    """A JSON request body."""
    return {"required": required, "content": {JSON: {"schema": schema}}}


AGENT = "/api/agents/{agent_id}"
LOGS = AGENT + "/logs"
SEED001 = "/api/v1/stream-logs/request/{agent_id}"
OTLP_LOGS = "/v1/logs"
PROTOBUF = "application/x-protobuf"

# (method, path) → (operationId, tag, error statuses, summary); the same routes as make_app's, in its order.
OPERATIONS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("get", "/healthz"): ("health", "system", "503", "Liveness and a database check."),
    ("get", "/metrics"): ("metrics", "system", "401 403", "Prometheus metrics (admin, or server.metrics_allow)."),
    ("get", "/api/openapi.json"): ("openapi", "system", "", "This document."),
    ("get", "/api/agents"): (
        "listAgents",
        "agents",
        "400 401 403",
        "The caller's agents (all for admin), newest first.",
    ),
    ("post", "/api/agents"): ("createAgent", "agents", "400 401 403 409", "Create a running agent."),
    ("get", AGENT): ("getAgent", "agents", "400 401 403 404", "One agent."),
    ("patch", AGENT): ("updateAgent", "agents", "400 401 403 404 409", "Set status (final), name or labels."),
    ("delete", AGENT): ("deleteAgent", "agents", "400 401 403 404", "Delete the agent and its lines."),
    ("post", LOGS): ("ingestLogs", "logs", "400 401 403 409 413 429 503 507", "Append lines, once committed."),
    ("get", LOGS): ("getLogHistory", "logs", "400 401 403 404", "History: JSON pages, NDJSON or text."),
    ("get", AGENT + "/volume"): ("getAgentVolume", "agents", "400 401 403 404", "Lines per level in time buckets."),
    ("get", LOGS + "/stream"): ("streamLogs", "streams", "400 401 403 404 429", "Seed 000's event stream."),
    ("get", SEED001): ("streamLogsSeed001", "streams", "400 401 403 429", "Seed 001's event stream."),
    ("get", "/api/streams"): ("streamManyAgents", "streams", "400 401 403 404 429", "Many agents, one stream."),
    ("get", "/api/search"): ("searchLines", "logs", "400 401 403 404 503", "Lines of every readable agent that match."),
    ("post", "/api/stream-tickets"): ("createStreamTicket", "streams", "400 401 403 404", "A stream ticket."),
    ("get", "/api/session"): ("getSession", "session", "401", "Who is signed in."),
    ("post", "/api/session"): ("signIn", "session", "400 401", "Sign in: keep the token in an HttpOnly cookie."),
    ("delete", "/api/session"): ("signOut", "session", "", "Sign out: clear the cookie."),
    ("get", "/api/agent-events"): ("agentEvents", "agents", "400 401 403 429", "The caller's agents, live."),
    ("post", OTLP_LOGS): (
        "exportLogs",
        "logs",
        "400 401 403 409 413 415 429 503 507",
        "OpenTelemetry logs in (OTLP/HTTP), once committed.",
    ),
    ("post", "/mcp"): ("mcp", "mcp", "401 403 413", "Model Context Protocol (Streamable HTTP) for AI assistants."),
}

COUNT = t("integer", minimum=0)
AFTER = param("after", "query", COUNT, "Only lines with seq above this.")
LEVEL_PARAM = param("level", "query", t("string"), "Minimum level: a name in any case or a number (WARNING, 30).")
Q = param("q", "query", t("string"), "Only lines with every word of q in the message or a field value (README).")
TOKEN = param("token", "query", t("string"), "A token or stream ticket, for EventSource (it cannot set headers).")
LAST_EVENT_ID = param("Last-Event-ID", "header", t("string"), "Resume after this event id; wins over ?after=.")
LABEL = param("label", "query", t("array", items=t("string", pattern="^[^=]+=")), "key=value; repeatable.")
WAIT = param(
    "wait",
    "query",
    t("integer", enum=[0, 1], default=0),
    "1: wait for an agent that does not exist yet (instead of a 404); another user's ends with not_owner.",
)
OTLP_REQUEST = t(
    "object",
    "An ExportLogsServiceRequest in OTLP/JSON; fields Sentra does not know are ignored.",
    properties={"resourceLogs": t("array", items=t("object"))},
)
OTLP_RESPONSE = t(
    "object",
    "An ExportLogsServiceResponse: {} (partialSuccess is never set: a request is stored whole or refused).",
    properties={"partialSuccess": t("object")},
)
RPC_ID = t(["string", "integer"])
RPC_MESSAGE = obj(
    {"jsonrpc": {"const": "2.0"}, "id": RPC_ID, "method": t("string"), "params": t("object")},
    "jsonrpc method",
    closed=False,
    description="A JSON-RPC 2.0 request (a notification without id).",
)
RPC_ERROR = obj(
    {
        "jsonrpc": {"const": "2.0"},
        "id": t(["string", "integer", "null"]),
        "error": obj({"code": t("integer"), "message": t("string"), "data": {}}, "code message"),
    },
    "*",
    description="A JSON-RPC 2.0 error: -32700 not JSON, -32600 not a request (or an unsupported MCP-Protocol-Version), "
    "-32601 an unknown method, -32602 bad params or an unknown tool.",
)
RPC_ANSWER = {"anyOf": [obj({"jsonrpc": {"const": "2.0"}, "id": RPC_ID, "result": t("object")}, "*"), RPC_ERROR]}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"token": []}, {"cookie": []}]
NEW_ID = "$response.body#/id"  # an OpenAPI link's runtime expression: the id of the agent just created


def details() -> dict[str, Schema]:
    """Per operationId: its success responses, parameters, request body and security."""
    agent = {"200": json_response("The agent.", ref("Agent"))}
    stream = [
        AFTER,
        param("tail", "query", COUNT, "Start with the last N lines."),
        LEVEL_PARAM,
        Q,
        TOKEN,
        LAST_EVENT_ID,
    ]
    cursor = param("after", "query", t("string"), "A stream cursor (agentA=5,agentB=7) to resume from.")
    agents = param("agent", "query", t("array", items=AGENT_ID), "An agent id; repeatable.")
    text = {"schema": t("string")}
    ingest = {
        JSON: {"schema": ref("IngestBody")},
        NDJSON: {"schema": t("string", "One JSON line object (or string) per text line.")},
        TEXT: {"schema": t("string", "Each text line is one log line.")},
    }
    replayed = {"Idempotent-Replayed": header("true on a retry's stored answer.", required=False)}
    lines = {"description": "The lines.", "content": {JSON: {"schema": ref("LineList")}, NDJSON: text, TEXT: text}}
    return {
        "health": {"responses": {"200": json_response("The database answers.", ref("Health"))}, "security": []},
        "metrics": {
            "responses": {"200": {"description": "Prometheus text format.", "content": {TEXT: text}}},
            "security": [{}, *SECURITY],
        },
        "openapi": {"responses": {"200": json_response("This OpenAPI 3.1 document.", t("object"))}, "security": []},
        "listAgents": {
            "responses": {"200": json_response("A page of agents.", ref("AgentList"))},
            "parameters": [
                param("status", "query", STATUS, "Only agents with this status."),
                LABEL,
                param("limit", "query", t("integer", minimum=1, default=100), "Page size; above 1000 counts as 1000."),
                param("cursor", "query", t("integer", minimum=1), "next_cursor of the previous page."),
            ],
        },
        "createAgent": {
            "responses": {
                "201": {
                    **json_response("Created.", ref("Agent"), {"Location": header("/api/agents/{id}")}),
                    # What a client does next with the new agent's id (the agent's own paths are found by
                    # their {agent_id}; these two take it in a body and a query).
                    "links": {
                        "StreamTicket": {"operationId": "createStreamTicket", "requestBody": {"agent": NEW_ID}},
                        "StreamManyAgents": {"operationId": "streamManyAgents", "parameters": {"agent": NEW_ID}},
                    },
                }
            },
            "requestBody": body(ref("AgentCreate"), required=False),
        },
        "getAgent": {"responses": agent},
        "updateAgent": {"responses": agent, "requestBody": body(ref("AgentPatch"))},
        "deleteAgent": {"responses": {"204": {"description": "Deleted; the agent's open streams end."}}},
        "ingestLogs": {
            "description": "A bad line rejects the whole batch. The agent is created on first ingest.",
            "responses": {
                "200": json_response("Committed (or the first answer for this key).", ref("IngestResult"), replayed)
            },
            "parameters": [param("Idempotency-Key", "header", t("string", minLength=1, maxLength=255), "Retry key.")],
            "requestBody": {"required": True, "content": ingest},
        },
        "getLogHistory": {
            "responses": {"200": lines},
            "parameters": [
                AFTER,
                param("before", "query", COUNT, "The `limit` lines just before this seq."),
                param("limit", "query", t("integer", minimum=1, default=1000), "Above 10000 counts as 10000."),
                LEVEL_PARAM,
                Q,
                param("format", "query", t("string", enum=["json", "ndjson", "text"]), "Without limit: everything."),
            ],
        },
        "getAgentVolume": {
            "description": "The run's stored lines (or those of since..until) counted per level in equal time "
            "buckets, from an index: a line counts in the bucket where its second starts (for wider buckets, its "
            "10 s, minute, 10 minutes or hour, the widest not wider than a bucket). Without lines, since and until: "
            "no buckets.",
            "responses": {"200": json_response("The buckets, oldest first.", ref("Volume"))},
            "parameters": [
                param("buckets", "query", t("integer", minimum=1, maximum=500, default=60), "How many buckets."),
                param("since", "query", t("string"), "Start of the span: epoch s (ms, µs, ns) or ISO 8601."),
                param("until", "query", t("string"), "End of the span: epoch s (ms, µs, ns) or ISO 8601."),
            ],
        },
        "streamLogs": {
            "responses": {"200": stream_response("LogsEvent"), "204": NO_MORE},
            "parameters": [*stream, WAIT],
        },
        "streamLogsSeed001": {
            "description": "Waits for an agent that does not exist yet.",
            "responses": {"200": stream_response("Seed001Event"), "204": NO_MORE},
            "parameters": stream,
        },
        "streamManyAgents": {
            "description": "Each event id is a cursor covering every agent of the stream.",
            "responses": {"200": stream_response("LogsEvent"), "204": NO_MORE},
            "parameters": [agents, LABEL, cursor, LEVEL_PARAM, Q, TOKEN, LAST_EVENT_ID, WAIT],
        },
        "searchLines": {
            "description": "Newest first. A line matches when every word of q is in its message or a field value, "
            'whatever the case; "quoted words" stand together, word* is a prefix (README: Search).',
            "responses": {"200": json_response("A page of matching lines.", ref("SearchPage"))},
            "parameters": [
                param("q", "query", t("string", minLength=1), "The words to search for.", required=True),
                LEVEL_PARAM,
                agents,
                LABEL,
                param("since", "query", t("string"), "Only lines at or after: epoch s (ms, µs, ns) or ISO 8601."),
                param("until", "query", t("string"), "Only lines at or before: epoch s (ms, µs, ns) or ISO 8601."),
                param("limit", "query", t("integer", minimum=1, maximum=1000, default=100), "Page size."),
                param("cursor", "query", t("string"), "next_cursor of the previous page."),
            ],
        },
        "createStreamTicket": {
            "description": "A short-lived read-only token for one agent, safe to put in an EventSource URL.",
            "responses": {
                "201": {
                    **json_response("The ticket.", ref("StreamTicket")),
                    "links": {
                        "StreamWithTicket": {
                            "operationId": "streamLogs",
                            "parameters": {"agent_id": "$response.body#/agent", "token": "$response.body#/token"},
                        }
                    },
                }
            },
            "requestBody": body(ref("StreamTicketRequest")),
        },
        "getSession": {"responses": {"200": json_response("The signed-in caller.", ref("Session"))}},
        "signIn": {
            "description": 'The token comes in the Authorization header or as {"token"} (application/json '
            "only). Sets the auth.cookie_name cookie: HttpOnly, SameSite=Strict, Path=/, Max-Age until the "
            "token's exp (30 days without one). With auth.mode none it only answers the session.",
            "responses": {
                "200": json_response(
                    "Signed in.", ref("Session"), {"Set-Cookie": header("The session cookie.", required=False)}
                )
            },
            "requestBody": body(ref("SignIn"), required=False),
            "security": [{}, {"bearer": []}],
        },
        "signOut": {
            "responses": {"204": {"description": "The cookie is cleared (also when nobody was signed in)."}},
            "security": [],
        },
        "exportLogs": {
            "description": "OTLP/HTTP logs: an ExportLogsServiceRequest in binary protobuf or OTLP/JSON "
            "(lowerCamelCase keys, trace and span ids in hex), gzip or deflate with Content-Encoding. Each resource's "
            "records go to the agent its sentra.agent.id, service.instance.id or service.name attribute names "
            "(created on first ingest); every record is stored, or none. Errors are Sentra's JSON errors; 400 and 413 "
            "are not to be retried, 429 and 503 after Retry-After.",
            "responses": {
                "200": {
                    "description": "Every record is stored: an empty ExportLogsServiceResponse, in the request's "
                    "encoding and Content-Type.",
                    "content": {PROTOBUF: {"schema": t("string", format="binary")}, JSON: {"schema": OTLP_RESPONSE}},
                }
            },
            "parameters": [
                param("Content-Encoding", "header", t("string", enum=["gzip", "deflate", "identity"]), "Compression.")
            ],
            "requestBody": {
                "required": True,
                "content": {PROTOBUF: {"schema": t("string", format="binary")}, JSON: {"schema": OTLP_REQUEST}},
            },
        },
        "mcp": {
            "description": "JSON-RPC 2.0 over POST, answered with JSON (the Streamable HTTP transport, revisions "
            "2024-11-05 to 2025-11-25; no session, no server-initiated stream: GET is a 405). Methods: initialize, "
            "ping, tools/list, tools/call; tools: list_agents, get_agent, read_logs, search_logs, wait_for_lines, each "
            "seeing what the token may read. A tool's failure is a result with isError. The token comes in the "
            "Authorization header only; an Origin not in server.cors_origins is refused (403).",
            "responses": {
                "200": json_response(
                    "The answer (an array of them for a batch).",
                    {"anyOf": [RPC_ANSWER, t("array", items=RPC_ANSWER, minItems=1)]},
                ),
                "202": {"description": "A notification or a client's response: nothing to answer."},
                "400": json_response(
                    "Not JSON-RPC, or an unsupported MCP-Protocol-Version: a JSON-RPC error.", RPC_ERROR
                ),
            },
            "parameters": [param("MCP-Protocol-Version", "header", t("string"), "The version initialize negotiated.")],
            "requestBody": body({"anyOf": [RPC_MESSAGE, t("array", items=RPC_MESSAGE, minItems=1)]}),
            "security": [{"bearer": []}],
        },
        "agentEvents": {
            "description": "A snapshot of the caller's agents (newest 1000), then each agent again when it is "
            "created or changes status, name or labels, and at most once a second while its line count moves.",
            "responses": {"200": stream_response("AgentEvent")},
            "parameters": [LABEL, TOKEN],
        },
    }


def paths() -> dict[str, Schema]:
    """Every path with its operations; each error status refers to an Error-shaped response."""
    extra = {**details(), **webhooks.details(), **attachments.details(), **runcontrol.details()}
    items: dict[str, Schema] = {}
    for (method, path), (op_id, tag, errors, summary) in {
        **OPERATIONS,
        **webhooks.OPERATIONS,
        **attachments.OPERATIONS,
        **runcontrol.OPERATIONS,
    }.items():
        answers = dict(extra[op_id]["responses"])
        for status in errors.split():
            answers[status] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
        answers["default"] = {"$ref": "#/components/responses/Error"}
        operation = {"operationId": op_id, "summary": summary, "tags": [tag], **extra[op_id], "responses": answers}
        item = items.setdefault(path, {})
        if "{agent_id}" in path:
            item["parameters"] = [param("agent_id", "path", AGENT_ID, "The agent's id.", required=True)]
        if "{attachment_id}" in path:
            item["parameters"].append(
                param("attachment_id", "path", attachments.ATTACHMENT_ID, "The attachment's id.", required=True)
            )
        if "{share_id}" in path:
            item["parameters"].append(param("share_id", "path", runcontrol.SHARE_ID, "The link's id.", required=True))
        if "{hook_id}" in path:
            item["parameters"] = [param("hook_id", "path", webhooks.HOOK_ID, "The webhook's id.", required=True)]
        item[method] = operation
    return items


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document served at /api/openapi.json."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sentra",
            "version": __version__,
            "description": "Live logs for AI agents: ingest over HTTP, SQLite, Server-Sent Events. Every error is "
            '{"error": {"code", "message"}} (JSON-RPC\'s own errors at /mcp excepted). Every path also answers '
            "OPTIONS (204 with Allow; the CORS grant for server.cors_origins), HEAD wherever it answers GET, and 405 "
            "with Allow for any other method.",
        },
        "tags": [{"name": name} for name in ("agents", "logs", "streams", "session", "system", "mcp", "webhooks")],
        "security": SECURITY,
        "paths": paths(),
        "components": {
            "schemas": {
                **resource_schemas(),
                **request_schemas(),
                **event_schemas(),
                **webhooks.schemas(),
                **attachments.schemas(),
                **runcontrol.schemas(),
            },
            "responses": error_responses(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "token": {"type": "apiKey", "in": "query", "name": "token"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "sentra_token", "description": "auth.cookie_name"},
            },
        },
    }
