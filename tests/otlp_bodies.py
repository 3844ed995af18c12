"""OTLP/HTTP logs bodies as agents send them: OTLP/JSON written by hand after the specification (as the browser
exporter writes it: lowerCamelCase keys, 64-bit integers as strings, trace and span ids in hex), and binary
protobuf built with opentelemetry-proto's generated classes, as an SDK's exporter builds it; and `export`, which
POSTs one to /v1/logs."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
GZIP = {"Content-Encoding": "gzip"}


# ---- OTLP/JSON ---------------------------------------------------------------------------------------------


def any_value_json(value: Any) -> dict[str, Any]:
    """An AnyValue in OTLP/JSON (an int as a string, as 64-bit integers are written)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value_json(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": attributes_json(value)}}
    raise TypeError(f"no AnyValue for {value!r}")


def attributes_json(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes as OTLP/JSON's list of {key, value}."""
    return [{"key": key, "value": any_value_json(value)} for key, value in attributes.items()]


def record_json(body: Any = "hello", **fields: Any) -> dict[str, Any]:
    """A logRecord in OTLP/JSON: `body` (None: none) and any LogRecord fields in lowerCamelCase, given as is
    (`attributes` as a dict)."""
    record: dict[str, Any] = dict(fields)
    if body is not None:
        record["body"] = any_value_json(body)
    if "attributes" in record:
        record["attributes"] = attributes_json(record["attributes"])
    return record


def resource_json(attributes: dict[str, Any], *records: dict[str, Any], scope: str = "app") -> dict[str, Any]:
    """A resourceLogs entry: the resource's attributes and one scope's records."""
    return {
        "resource": {"attributes": attributes_json(attributes)},
        "scopeLogs": [{"scope": {"name": scope, "version": "1.0"}, "logRecords": list(records)}],
    }


def request_json(*resources: dict[str, Any]) -> dict[str, Any]:
    """An ExportLogsServiceRequest in OTLP/JSON."""
    return {"resourceLogs": list(resources)}


def agent_json(agent_id: str, *bodies: Any) -> dict[str, Any]:
    """A request of one record per body for the agent `agent_id` (sentra.agent.id)."""
    return request_json(resource_json({"sentra.agent.id": agent_id}, *(record_json(body) for body in bodies)))


# ---- binary protobuf -------------------------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    """An AnyValue message."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    raise TypeError(f"no scalar AnyValue for {value!r}")


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    """Attributes as KeyValue messages."""
    return [KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()]


def protobuf_request(resources: list[tuple[dict[str, Any], list[LogRecord]]], scope: str = "app") -> bytes:
    """A serialized ExportLogsServiceRequest: per resource its attributes and records (in one scope)."""
    request = ExportLogsServiceRequest()
    for attributes, records in resources:
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.extend(key_values(attributes))
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = scope
        scope_logs.log_records.extend(records)
    return request.SerializeToString()


def info_records(count: int, message: str = "record {}") -> list[LogRecord]:
    """`count` INFO records, numbered from 1 in their messages (`message` formatted with the number)."""
    return [
        LogRecord(severity_number=9, severity_text="INFO", body=AnyValue(string_value=message.format(number)))
        for number in range(1, count + 1)
    ]


def protobuf_body(agent_id: str, count: int, *, message: str = "record {}", scope: str = "bench") -> bytes:
    """`count` INFO records for one agent (sentra.agent.id), numbered from 1 in their messages, as an SDK's
    exporter serializes them: the body of a POST /v1/logs with Content-Type application/x-protobuf."""
    resource = {"sentra.agent.id": agent_id, "service.name": agent_id}
    return protobuf_request([(resource, info_records(count, message))], scope)


def gzipped(body: bytes) -> bytes:
    """The body gzip-compressed, as Content-Encoding: gzip sends it."""
    return gzip.compress(body)


# ---- sending ---------------------------------------------------------------------------------------------


async def export(
    client: httpx.AsyncClient, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST /v1/logs: a dict as OTLP/JSON, bytes as they are (protobuf unless `headers` say otherwise)."""
    if isinstance(body, dict):
        return await client.post("/v1/logs", json=body, headers=headers)
    return await client.post("/v1/logs", content=body, headers={**PROTOBUF, **(headers or {})})
