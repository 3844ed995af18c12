"""JSON-RPC 2.0 as MCP carries it: a POSTed body read into messages, and the answers written for them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The error codes JSON-RPC 2.0 defines (section 5.1).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

RequestId = str | int


class RpcError(Exception):
    """A JSON-RPC error: its code, a message that says what was wrong, and optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class Call:
    """A request (answered with the result of `method`) or, without an id, a notification (answered with nothing)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    id: RequestId | None = None

    @property
    def is_notification(self) -> bool:
        """True when the sender expects no answer."""
        return self.id is None


@dataclass(frozen=True, slots=True)
class Refused:
    """A message that is not a valid request: answered with `error`, under its id if one could be read."""

    error: RpcError
    id: RequestId | None = None


# One message of a body; None is a client's response to a request, which Sentra never sends, so nothing answers it.
Message = Call | Refused | None


def parse_body(body: bytes) -> tuple[list[Message], bool]:
    """The messages of a POSTed body and whether they came as a batch (a JSON array); RpcError if the body as a
    whole is not JSON (PARSE_ERROR) or neither a message nor a non-empty array of them (INVALID_REQUEST)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        # JSON may spell lone UTF-16 surrogates (\ud800), which no UTF-8 text (or database column) can hold.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise RpcError(PARSE_ERROR, f"Parse error: the body is not JSON in UTF-8 ({exc})") from None
    if isinstance(value, list):
        if not value:
            raise RpcError(INVALID_REQUEST, "Invalid Request: an empty batch")
        return [read_message(item) for item in value], True
    if not isinstance(value, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: the body must be a JSON-RPC message (a JSON object)")
    return [read_message(value)], False


def read_message(value: Any) -> Message:
    """One JSON-RPC message, checked as the specification (and MCP, which forbids a null id) asks."""
    if not isinstance(value, dict):
        return Refused(RpcError(INVALID_REQUEST, "Invalid Request: a message must be a JSON object"))
    raw_id = value.get("id")
    message_id = raw_id if _is_id(raw_id) else None
    if value.get("jsonrpc") != "2.0":
        return Refused(RpcError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'), message_id)
    method = value.get("method")
    if method is None and "id" in value and ("result" in value or "error" in value):
        return None
    if not isinstance(method, str):
        return Refused(RpcError(INVALID_REQUEST, 'Invalid Request: "method" must be a string'), message_id)
    if "id" in value and message_id is None:
        return Refused(RpcError(INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer'))
    params = value.get("params", {})
    if not isinstance(params, dict):
        return Refused(RpcError(INVALID_PARAMS, 'Invalid params: "params" must be an object'), message_id)
    return Call(method, params, message_id)


def result_message(message_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    """The response carrying `result`."""
    return {"jsonrpc": "2.0", "id": message_id, "result": result}


def error_message(message_id: RequestId | None, error: RpcError) -> dict[str, Any]:
    """The response carrying `error` (id null when the request's could not be read)."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": message_id, "error": body}


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
