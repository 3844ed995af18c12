"""OpenTelemetry logs in: a POST /v1/logs body (OTLP/HTTP, binary protobuf or OTLP/JSON, gzip or not) decoded with
opentelemetry-proto's generated classes, and its log records mapped to Sentra's lines, one batch per agent.

The mapping (the README's table): the agent is the resource's `sentra.agent.id`, else `service.instance.id`, else
`service.name`; the time `timeUnixNano`, else `observedTimeUnixNano`, else now; the level from `severityNumber`'s
ranges, else `severityText`, else INFO; the message a string body (any other body is kept in `fields.body` and
shown as JSON); the source the instrumentation scope's name; the fields the record's attributes as typed, plus
`trace_id` and `span_id` in lowercase hex when set.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from sentra.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from sentra.lines import NewLine, check_agent_id, line_from_object, parse_level

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# The answer of full success, an empty ExportLogsServiceResponse, in each encoding.
SUCCESS: dict[str, bytes] = {
    PROTOBUF: ExportLogsServiceResponse().SerializeToString(),
    JSON: json_format.MessageToJson(ExportLogsServiceResponse(), indent=None).encode(),
}
# Resource attributes naming the agent, the first present wins; and those a new agent gets as labels.
AGENT_ID_KEYS = ("sentra.agent.id", "service.instance.id", "service.name")
LABEL_KEYS = ("service.name", "service.version", "deployment.environment", "deployment.environment.name")
NAME_KEY = "service.name"
MAX_LABEL_VALUE = 1024
# The highest severityNumber of each level (OpenTelemetry's log data model: 1-4 TRACE ... 21-24 FATAL).
SEVERITY_RANGES = ((8, "DEBUG"), (12, "INFO"), (16, "WARNING"), (20, "ERROR"))
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_ID_KEYS = ("traceId", "spanId", "trace_id", "span_id")


@dataclass
class AgentBatch:
    """One agent's lines of a request, and the name and labels the agent gets if these lines create it."""

    agent_id: str
    name: str
    labels: dict[str, str]
    lines: list[NewLine] = field(default_factory=list)


# ---- the body -------------------------------------------------------------------------------------------


def body_format(content_type: str | None, content_encoding: str | None) -> tuple[str, bool]:
    """(media type, compressed) of a request; UnsupportedMediaType (415) for what OTLP/HTTP does not send."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise UnsupportedMediaType(
            f"unsupported Content-Type {(content_type or '')[:80]!r}: OTLP/HTTP logs are {PROTOBUF} "
            f"(ExportLogsServiceRequest) or {JSON} (OTLP/JSON)",
            code="unsupported_media_type",
        )
    coding = (content_encoding or "identity").strip().lower()
    if coding not in ("identity", "gzip", "deflate"):
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {(content_encoding or '')[:40]!r}: send gzip, deflate or none",
            code="unsupported_encoding",
        )
    return media, coding != "identity"


def inflate(body: bytes, limit: int) -> bytes:
    """A gzip or zlib body decompressed, never to more than `limit` bytes (413 past it: a small bomb stays small);
    BadRequest if it is neither."""
    data = b""
    rest = body
    while True:  # gzip allows several members one after another; each round reads one, and consumes its bytes
        # 32 + MAX_WBITS: zlib reads either header, so Content-Encoding deflate (zlib, as the Python SDK sends) works.
        inflater = zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)
        try:
            data += inflater.decompress(rest, limit + 1 - len(data))
        except zlib.error as exc:
            raise BadRequest(f"the body is not valid gzip or deflate data: {exc}", code="invalid_encoding") from None
        if len(data) > limit:
            raise PayloadTooLarge(
                f"the body decompresses to more than the limit of {limit} bytes", code="body_too_large"
            )
        if not inflater.eof:
            raise BadRequest("the compressed body ends before its data does", code="invalid_encoding")
        rest = inflater.unused_data
        if not rest:
            return data


def decode_request(body: bytes, media: str, compressed: bool, limit: int) -> ExportLogsServiceRequest:
    """The ExportLogsServiceRequest of a body; BadRequest (400: the client must not retry) if it is not one."""
    data = inflate(body, limit) if compressed else body
    request = ExportLogsServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(data)
        except Exception as exc:  # a decoder of untrusted bytes: whatever it raises means "not a request"
            raise BadRequest(
                f"the body is not a protobuf ExportLogsServiceRequest: {exc}", code="invalid_otlp"
            ) from None
        return request
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object (an ExportLogsServiceRequest)", code="invalid_otlp")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except Exception as exc:  # ParseError mostly; any failure of the parser means the same
        raise BadRequest(f"the body is not an OTLP/JSON ExportLogsServiceRequest: {exc}", code="invalid_otlp") from None
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex, where protobuf's JSON mapping reads bytes as base64: re-encode."""
    for resource in _objects(document, "resourceLogs", "resource_logs"):
        for scope in _objects(resource, "scopeLogs", "scope_logs"):
            for record in _objects(scope, "logRecords", "log_records"):
                for key in _ID_KEYS:
                    value = record.get(key)
                    if isinstance(value, str):
                        if not _HEX.fullmatch(value):
                            raise BadRequest(
                                f"{key} {value[:40]!r} is not hex: OTLP/JSON writes trace and span ids in hex",
                                code="invalid_otlp",
                            )
                        record[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _objects(parent: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    """The objects in the first of `keys` that holds a list (the parser says what is wrong with anything else)."""
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []


# ---- records to lines -----------------------------------------------------------------------------------


def agent_batches(
    request: ExportLogsServiceRequest, *, max_line_size: int, max_lines: int, now: float | None = None
) -> list[AgentBatch]:
    """The request's log records as lines, one batch per agent in order of first appearance (none for an empty
    request); BadRequest naming the resource or record that cannot be stored, PayloadTooLarge above max_lines."""
    now = time.time() if now is None else now
    count = sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)
    if count > max_lines:
        raise PayloadTooLarge(
            f"the request has {count} log records, above the limit of {max_lines} per request",
            code="too_many_lines",
        )
    batches: dict[str, AgentBatch] = {}
    number = 0
    for index, resource_logs in enumerate(request.resource_logs, start=1):
        if not any(scope.log_records for scope in resource_logs.scope_logs):
            continue
        attributes = _attributes(resource_logs.resource.attributes)
        agent_id = _agent_id(attributes, index)
        batch = batches.get(agent_id)
        if batch is None:
            name = "" if attributes.get(NAME_KEY) is None else _text(attributes[NAME_KEY], NAME_KEY)
            batch = batches[agent_id] = AgentBatch(agent_id, name, _labels(attributes))
        for scope_logs in resource_logs.scope_logs:
            source = scope_logs.scope.name
            for record in scope_logs.log_records:
                number += 1
                try:
                    batch.lines.append(_line(record, source, now, max_line_size))
                except ValueError as exc:
                    raise BadRequest(f"log record {number}: {exc}", code="invalid_line") from None
    return list(batches.values())


def _line(record: LogRecord, source: str, now: float, max_line_size: int) -> NewLine:
    """One log record as a line, checked as ingest checks a line (size, nesting, text); ValueError if it cannot be."""
    fields = _attributes(record.attributes)
    message = ""
    kind = record.body.WhichOneof("value")
    if kind == "string_value":
        message = record.body.string_value
    elif kind is not None:  # bytes too: their base64 text is not the message
        fields["body"] = _value(record.body)
        message = json.dumps(fields["body"], ensure_ascii=False)
    # Ids of all zeros mean "no span" (the Python SDK sends them outside a span).
    if any(record.trace_id):
        fields["trace_id"] = record.trace_id.hex()
    if any(record.span_id):
        fields["span_id"] = record.span_id.hex()
    line: dict[str, Any] = {"message": message, "level": _level(record), "source": source, "fields": fields}
    nanoseconds = record.time_unix_nano or record.observed_time_unix_nano
    if nanoseconds:
        line["ts"] = nanoseconds / 1e9
    return line_from_object(line, now, max_line_size)


def _level(record: LogRecord) -> str:
    """The level of severityNumber's range, else of severityText (a name Sentra knows), else INFO."""
    number = record.severity_number
    if number > 0:
        return next((level for highest, level in SEVERITY_RANGES if number <= highest), "CRITICAL")
    try:
        return parse_level(record.severity_text)
    except ValueError:
        return "INFO"


def _value(value: AnyValue) -> Any:
    """An AnyValue as JSON: bytes as base64 text, and a double JSON has no number for as protobuf's JSON names it."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        if math.isfinite(number):
            return number
        return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
    if kind == "bool_value":
        return value.bool_value
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None  # an empty AnyValue


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """Key-value pairs as a dict of JSON values (a key given twice: the last wins)."""
    return {pair.key: _value(pair.value) for pair in pairs}


def _agent_id(attributes: dict[str, Any], index: int) -> str:
    """The agent of a resource: the first of AGENT_ID_KEYS it sets; BadRequest if none, or one that cannot be."""
    for key in AGENT_ID_KEYS:
        value = attributes.get(key)
        if type(value) in (str, int) and value != "":
            try:
                return check_agent_id(str(value))
            except BadRequest as exc:
                raise BadRequest(f"resource {index}: the attribute {key}: {exc.message}", code=exc.code) from None
    raise BadRequest(
        f"resource {index} names no agent: set the resource attribute {', '.join(AGENT_ID_KEYS[:-1])} "
        f"or {AGENT_ID_KEYS[-1]}",
        code="missing_agent_id",
    )


def _labels(attributes: dict[str, Any]) -> dict[str, str]:
    """The labels a new agent gets: LABEL_KEYS the resource sets, as text."""
    return {key: _text(attributes[key], key)[:MAX_LABEL_VALUE] for key in LABEL_KEYS if attributes.get(key) is not None}


def _text(value: Any, key: str) -> str:
    """A resource attribute as text (a string as it is, anything else as JSON); BadRequest if it is not UTF-8."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"the resource attribute {key} contains an unpaired UTF-16 surrogate") from None
    return text
