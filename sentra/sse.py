"""Wire formats: the SSE frame, and the encoders for seed 000's, seed 001's and the multi-agent events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sentra.lines import Line
from sentra.models import Agent

# Some clients split lines on these; inside JSON they can always be written as escapes.
_LINE_BREAKERS = {ord("\u2028"): "\\u2028", ord("\u2029"): "\\u2029", ord("\u0085"): "\\u0085"}
_HAS_LINE_BREAKER = re.compile("[\u2028\u2029\u0085]")
# The C string encoder json.dumps(..., ensure_ascii=False) itself uses.
_quote: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON with U+2028, U+2029 and U+0085 escaped, safe for one `data:` line."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKERS).encode()


def encode_sse(data: bytes, *, event_id: str | None = None, event: str | None = None) -> bytes:
    """One SSE event; `data` must not contain CR or LF (json_bytes guarantees it)."""
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def retry_hint(milliseconds: int) -> bytes:
    """The `retry:` field that sets EventSource's reconnect delay."""
    return b"retry: " + str(milliseconds).encode() + b"\n\n"


def comment(text: str) -> bytes:
    """An SSE comment, ignored by clients; keeps idle connections and proxies alive."""
    return b": " + text.encode() + b"\n\n"


def iso_time(ts: float) -> str:
    """Epoch seconds as JavaScript's toISOString() writes them: 2025-09-21T10:30:00.000Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parts(line: Line) -> tuple[bytes, bytes]:
    """The line's text as a JSON string body (no quotes, ending in \\n) and its JSON object: built once,
    by hand, since every stream and every replayed line goes through here (the same bytes json.dumps gives)."""
    wire = line.wire
    cached = wire.get("json")
    if cached is None:
        message = _quote(line.message)
        fields = json.dumps(line.fields, ensure_ascii=False, separators=(",", ":")) if line.fields else "{}"
        source = _quote(line.source) if line.source else '""'
        # Agent ids are A-Z a-z 0-9 . _ : - only (checked at creation): nothing in them needs escaping.
        text = (
            f'{{"agent":"{line.agent}","seq":{line.seq},"ts":{line.ts!r},"level":"{line.level}",'
            f'"message":{message},"source":{source},"fields":{fields}}}'
        )
        body = message[1:-1] + "\\n"
        if not text.isascii() and _HAS_LINE_BREAKER.search(text):
            text, body = text.translate(_LINE_BREAKERS), body.translate(_LINE_BREAKERS)
        cached = wire["json"] = text.encode()
        wire["text"] = body = body.encode()
        return body, cached
    return wire["text"], cached


def logs_event(
    lines: Iterable[Line], status: str | None, *, event_id: str, extra: dict[str, Any] | None = None
) -> bytes:
    """Seed 000's event: {"logs": "...", "status": ..., "lines": [...]} plus extras (final, skipped…),
    assembled from each line's cached bytes; status None (null) on an agent the reader may not see."""
    texts: list[bytes] = []
    objects: list[bytes] = []
    for line in lines:
        text, obj = _parts(line)
        texts.append(text)
        objects.append(obj)
    tail = b"".join(b"," + json_bytes(key) + b":" + json_bytes(value) for key, value in (extra or {}).items())
    data = (
        b'{"logs":"'
        + b"".join(texts)
        + b'","status":'
        + json_bytes(status)
        + tail
        + b',"lines":['
        + b",".join(objects)
        + b"]}"
    )
    return encode_sse(data, event_id=event_id)


def seed001_log_event(line: Line, agent: Agent) -> bytes:
    """Seed 001's per-line event {"type": "log", "data": {...}, "timestamp", "channel"}: built once per line."""
    cached = line.wire.get("seed001")
    if cached is None:
        stamp = iso_time(line.ts)
        # Seed 001's publisher names its agent in every record; the agent's own name is the fallback.
        named = line.fields.get("agent_name")
        payload = {
            "type": "log",
            "data": {
                "level": line.level,
                "message": line.message,
                "source": named if isinstance(named, str) and named else agent.name or agent.id,
                "request_id": agent.id,
                "timestamp": stamp,
                "log_source": line.source,
                "seq": line.seq,
                "fields": line.fields,
            },
            "timestamp": stamp,
            "channel": f"browser_use_logs:{agent.id}",
        }
        cached = line.wire["seed001"] = encode_sse(json_bytes(payload), event_id=str(line.seq))
    return cached


def seed001_heartbeat(now: float) -> bytes:
    """Seed 001's heartbeat event."""
    return encode_sse(json_bytes({"type": "heartbeat", "timestamp": iso_time(now)}))


def seed001_end(agent: Agent, *, event_id: str, reason: str | None = None) -> bytes:
    """Seed 001's last event when the agent finishes (or the stream ends for another reason)."""
    payload: dict[str, Any] = {"type": "end", "status": agent.status, "request_id": agent.id}
    if reason is not None:
        payload["reason"] = reason
    elif agent.reason:
        payload["reason"] = agent.reason
    return encode_sse(json_bytes(payload), event_id=event_id)


def format_cursor(cursors: dict[str, int]) -> str:
    """The multi-agent event id: `agentA=5,agentB=7` (ids never contain ',' or '=')."""
    return ",".join(f"{agent_id}={seq}" for agent_id, seq in sorted(cursors.items()))


def parse_cursor(text: str) -> dict[str, int]:
    """The per-agent seqs in a multi-agent event id; raises ValueError if malformed."""
    cursors: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        agent_id, _, seq = part.rpartition("=")
        if not agent_id or not seq.isdigit():
            raise ValueError(f"bad cursor part {part[:60]!r}")
        cursors[agent_id] = int(seq)
    return cursors
