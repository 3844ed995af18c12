"""The JSON Schemas of what Sentra answers, takes and streams, built from small helpers (t, ref, obj): the OpenAPI
document's components (api/openapi.py) and the shapes MCP's tools declare (mcp/tools.py)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
NDJSON = "application/x-ndjson"
TEXT = "text/plain"
SSE = "text/event-stream"

Schema = dict[str, Any]


def t(kind: str | list[str], description: str = "", **extra: Any) -> Schema:
    """A schema of one JSON type (or a list of types), with an optional description."""
    schema: Schema = {"type": kind, **extra}
    if description:
        schema["description"] = description
    return schema


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: str = "", *, closed: bool = True, **extra: Any) -> Schema:
    """An object schema; `required` lists names separated by spaces ("*": all); `closed` forbids others."""
    schema: Schema = {"type": "object", "properties": properties, **extra}
    names = list(properties) if required == "*" else required.split()
    if names:
        schema["required"] = names
    if closed:
        schema["additionalProperties"] = False
    return schema


AGENT_ID = t("string", pattern="^[A-Za-z0-9._:-]{1,128}$", examples=["run-42"])
STATUS = t("string", enum=["running", "completed", "failed"])
LEVEL = t("string", enum=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
TIME = t("string", format="date-time")
SEQ = t("integer", minimum=1)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
COUNT_OF = t("integer", minimum=0)
LABELS = t(
    "object",
    'String keys to string values, e.g. {"batch": "42"}.',
    additionalProperties=t("string", maxLength=1024),
    propertyNames={"minLength": 1, "maxLength": 128},
)


def resource_schemas() -> dict[str, Schema]:
    """What the API answers: errors, lines, agents and their pages."""
    return {
        "Error": obj({"error": obj({"code": t("string", minLength=1), "message": t("string", minLength=1)}, "*")}, "*"),
        "Line": obj(
            {
                "agent": AGENT_ID,
                "seq": t("integer", "1, 2, 3… per agent, gap-free.", minimum=1),
                "ts": t("number", "Epoch seconds."),
                "level": LEVEL,
                "message": t("string"),
                "source": t("string", "stdout, stderr, a logger name…; may be empty."),
                "fields": t("object", "Every other key the client sent."),
            },
            "*",
        ),
        "Agent": obj(
            {
                "id": AGENT_ID,
                "name": t("string"),
                "owner": t("string", "The token subject that created the agent."),
                "status": STATUS,
                "reason": t(["string", "null"], "Why it finished, e.g. timeout."),
                "labels": LABELS,
                "created_at": t("number"),
                "updated_at": t("number"),
                "last_line_at": t(["number", "null"]),
                "line_count": t("integer", "Lines stored now (retention may have removed some).", minimum=0),
                "first_seq": t("integer", "The oldest seq retention kept.", minimum=1),
                "last_seq": t("integer", "0 until the first line.", minimum=0),
                "stop_requested": t("boolean", "Someone asked the run to stop (POST /api/agents/{id}/stop)."),
                "stop_requested_by": t(["string", "null"], "Who asked the run to stop; null: nobody."),
                "level_counts": obj({name: COUNT_OF for name in LEVELS}, "*", description="Stored lines per level."),
                "first_error_seq": t(["integer", "null"], "The first stored ERROR or CRITICAL line; null: none."),
                "ended_at": t(["number", "null"], "When the run finished; null while it runs."),
                "usage": {
                    "anyOf": [obj({"tokens": t("number"), "cost": t("number")}, "*"), t("null")],
                    "description": "Sums of the stored lines' numeric tokens and cost fields; null: no line had any.",
                },
            },
            "*",
        ),
        "Volume": obj(
            {
                "buckets": t(
                    "array",
                    items=obj(
                        {
                            "start": t("number", "Epoch seconds."),
                            "end": t("number"),
                            "counts": obj({name: COUNT_OF for name in LEVELS}, "*"),
                        },
                        "*",
                    ),
                )
            },
            "*",
        ),
        "AgentList": obj(
            {
                "agents": t("array", items=ref("Agent")),
                "next_cursor": t(["integer", "null"], "Pass as ?cursor= for the next page; null on the last."),
            },
            "*",
        ),
        "LineList": obj(
            {
                "lines": t("array", "Always in ascending seq.", items=ref("Line")),
                "next_after": t(["integer", "null"], "Pass as ?after= for the next page; null: no more.", minimum=1),
                "next_before": t(["integer", "null"], "Pass as ?before= for the page before that.", minimum=1),
            },
            "*",
        ),
        "SearchPage": obj(
            {
                "lines": t("array", "Newest first, each with its agent.", items=ref("Line")),
                "next_cursor": t(["string", "null"], "Pass as ?cursor= for the next page; null on the last."),
            },
            "*",
        ),
        "IngestResult": obj(
            {
                "accepted": SEQ,
                "first_seq": SEQ,
                "last_seq": SEQ,
                "stop_requested": {"const": True, "description": "Present once the run was asked to stop: stop it."},
                "stop_requested_by": t("string", "Who asked the run to stop."),
            },
            "accepted first_seq last_seq",
        ),
        "StreamTicket": obj(
            {
                "ticket": t("string", "A read-only JWT for one agent."),
                "token": t("string", "The same JWT."),
                "agent": AGENT_ID,
                "expires_at": t("number"),
                "stream_url": t("string", "The agent's stream URL with ?token=."),
            },
            "*",
        ),
        "Session": obj(
            {
                "subject": t("string", "The user the token names."),
                "scopes": t("array", items=t("string")),
                "auth": t("string", "jwt, or none when auth.mode is none.", enum=["jwt", "none"]),
                "expires_at": t(["number", "null"], "When the token (and so the cookie) expires."),
            },
            "*",
        ),
        "Health": obj(
            {
                "status": {"const": "ok"},
                "open_streams": t("integer", minimum=0),
                "limits": obj(
                    {
                        "max_line_size": t("integer", "Largest line, message and fields, in UTF-8 bytes.", minimum=1),
                        "max_body_size": t("integer", "Largest ingest request body, in bytes.", minimum=1),
                        "max_lines_per_request": t("integer", "Most lines in one ingest request.", minimum=1),
                    },
                    "*",
                    description="The ingest limits (limits.* settings) a client splits and batches its lines by.",
                ),
            },
            "*",
        ),
    }


def request_schemas() -> dict[str, Schema]:
    """What the API takes: ingest lines, agent fields, ticket requests."""
    number_or_text = ["number", "string"]
    return {
        "IngestLine": obj(
            {
                "message": t("string"),
                "msg": {"description": "Alias of message (seed 001's publisher)."},
                "ts": t(number_or_text, "Epoch s, ms, µs or ns, or ISO 8601; default: when received."),
                "timestamp": {"description": "Alias of ts."},
                "level": t(["string", "integer"], "A name in any case or a number; default INFO."),
                "levelname": {"description": "Alias of level."},
                "source": t("string", maxLength=256),
                "log_source": {"description": "Alias of source."},
                "fields": t("object"),
            },
            closed=False,
            # An alias alone is read as its key, and must be what the key must be; beside its key it is one more
            # key, kept in fields as sent.
            allOf=[
                {"anyOf": [{"required": ["message"]}, {"required": ["msg"]}]},
                *(
                    {"anyOf": [{"required": [key]}, {"properties": {alias: schema}}]}
                    for key, alias, schema in (
                        ("message", "msg", t("string")),
                        ("ts", "timestamp", t(number_or_text)),
                        ("level", "levelname", t(["string", "integer"])),
                        ("source", "log_source", t("string", maxLength=256)),
                    )
                ),
            ],
            description="One line; keys not listed here are kept in `fields`. An alias (msg, timestamp, "
            "levelname, log_source) is read when its key is absent; beside its key it is kept in `fields`.",
        ),
        "IngestBody": {
            "anyOf": [
                ref("IngestLine"),
                t("string", "One line's message."),
                t("array", minItems=1, items={"anyOf": [ref("IngestLine"), t("string")]}),
            ]
        },
        "AgentCreate": obj({"id": AGENT_ID, "name": t("string", maxLength=512), "labels": LABELS}),
        "AgentPatch": obj(
            {
                "status": {**STATUS, "description": "completed and failed are final: changing them is a 409."},
                "reason": t("string", maxLength=4096),
                "name": t("string", maxLength=512),
                "labels": {**LABELS, "description": "Replaces every label."},
            }
        ),
        "StreamTicketRequest": obj({"agent": AGENT_ID}, "*"),
        # `token` may be left out when the Authorization header carries it.
        "SignIn": obj(
            {"token": t("string", "A Sentra token (JWT); needed unless sent as a Bearer header.", minLength=1)}
        ),
    }


def event_schemas() -> dict[str, Schema]:
    """The `data:` of stream events, in seed 000's and seed 001's formats."""
    seed001_line = obj(
        {
            "level": LEVEL,
            "message": t("string"),
            "source": t("string", "The agent's name (or id)."),
            "request_id": AGENT_ID,
            "timestamp": TIME,
            "log_source": t("string", "The line's own source."),
            "seq": SEQ,
            "fields": t("object"),
        },
        "level message source request_id timestamp log_source",
        closed=False,
    )
    return {
        "LogsEvent": obj(
            {
                "logs": t("string", "The new lines' messages, each ending in \\n."),
                "status": {**STATUS, "type": ["string", "null"], "enum": [*STATUS["enum"], None]},
                "lines": t("array", items=ref("Line")),
                "final": t("boolean", "true: the last event; false: the stream ends for `reason`."),
                "reason": t(["string", "null"], "deleted, token_expired, token_revoked, not_owner (status null)…"),
                "skipped": t("integer", "Lines before first_seq that retention removed.", minimum=1),
                "first_seq": SEQ,
                "agent": {**AGENT_ID, "description": "On /api/streams: the agent a final event is about."},
            },
            "logs status lines",
            description="One seed-000 event; its id: is the last seq (on /api/streams a cursor of every agent).",
        ),
        "AgentEvent": obj(
            {
                "type": t(
                    "string",
                    "snapshot: the agents now (replace); update: created or changed (upsert); removed: deleted or "
                    "no longer matching; end: the feed ends for `reason`.",
                    enum=["snapshot", "update", "removed", "end"],
                ),
                "agents": t("array", items=ref("Agent")),
                "reason": t("string", "token_expired or token_revoked."),
            },
            "type agents",
            description="One agents-feed event; it has no id: a reconnect starts with a new snapshot.",
        ),
        "Seed001Event": {
            "description": "One seed-001 event.",
            "oneOf": [
                obj(
                    {"type": {"const": "log"}, "data": seed001_line, "timestamp": TIME, "channel": t("string")},
                    "*",
                ),
                obj({"type": {"const": "heartbeat"}, "timestamp": TIME}, "*"),
                obj(
                    {"type": {"const": "end"}, "status": STATUS, "request_id": AGENT_ID, "reason": t("string")},
                    "type status request_id",
                ),
            ],
        },
    }
