"""Log lines: the record shared by store, registry and wire formats, and the ingest body parser."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, overload

from sentra.errors import BadRequest, PayloadTooLarge
from sentra.line_values import LEVEL_BY_NUMBER as LEVEL_BY_NUMBER
from sentra.line_values import LEVEL_NAMES, ROW_WIDTH, check_depth, encode_fields
from sentra.line_values import LEVELS as LEVELS
from sentra.line_values import NewLine as NewLine
from sentra.line_values import NewLines as NewLines
from sentra.line_values import parse_level as parse_level
from sentra.line_values import parse_ts as parse_ts

try:
    from sentra.ingest_decode import decode_body as _decode_in_c
except ImportError:  # no msgspec (sentra.pyz carries no compiled code): every body is read in Python
    _decode_in_c = None  # type: ignore[assignment]

AGENT_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MISSING: Any = object()
STATUSES = ("running", "completed", "failed")
FINISHED = ("completed", "failed")

# Seed 001's publisher writes {"agent_name", "msg", "request_id", "timestamp", "source"}; other loggers
# use levelname/log_source. The first name present wins; the rest stay in `fields`.
_ALIASES: dict[str, tuple[str, ...]] = {
    "message": ("message", "msg"),
    "ts": ("ts", "timestamp"),
    "level": ("level", "levelname"),
    "source": ("source", "log_source"),
}


@dataclass(slots=True)
class Line:
    """One stored log line of one agent; `wire` caches its encodings so each is built once."""

    agent: str
    seq: int
    ts: float
    level: str
    message: str
    source: str
    fields: dict[str, Any]
    wire: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    @property
    def levelno(self) -> int:
        """The numeric level (DEBUG 10 … CRITICAL 50), for minimum-level filters."""
        return LEVELS[self.level]

    def to_json(self) -> dict[str, Any]:
        """The line as the API shows it."""
        return {
            "agent": self.agent,
            "seq": self.seq,
            "ts": self.ts,
            "level": self.level,
            "message": self.message,
            "source": self.source,
            "fields": self.fields,
        }


class CommittedLines(Sequence[Line]):
    """Lines as committed: runs of NewLines numbered from their first seq, made into Line objects on first use,
    since most commits have nobody to hand them to (no stream follows the agent, no webhook wants them)."""

    __slots__ = ("_made", "agent_id", "parts")

    def __init__(self, agent_id: str, parts: list[tuple[int, NewLines]]) -> None:
        self.agent_id = agent_id
        # (first seq, lines) in seq order; never an empty run, so that "has parts" means "has lines".
        self.parts = parts if all(new for _, new in parts) else [part for part in parts if part[1]]
        self._made: list[Line] | None = None

    @classmethod
    def joined(cls, runs: list[CommittedLines]) -> CommittedLines:
        """One agent's runs of a batch as one sequence (the first run itself when there is one)."""
        if len(runs) == 1:
            return runs[0]
        return cls(runs[0].agent_id, [part for run in runs for part in run.parts])

    def _lines(self) -> list[Line]:
        if self._made is None:
            agent_id = self.agent_id
            made: list[Line] = []
            for first, new in self.parts:
                rows = new.rows
                made += [
                    Line(agent_id, seq, ts, LEVEL_BY_NUMBER[level], message, source, fields)
                    for seq, ts, level, source, message, fields in zip(
                        count(first),
                        rows[2::ROW_WIDTH],
                        rows[3::ROW_WIDTH],
                        rows[4::ROW_WIDTH],
                        rows[5::ROW_WIDTH],
                        new.fields,
                    )
                ]
            self._made = made
        return self._made

    def __len__(self) -> int:
        return sum(len(new) for _, new in self.parts)

    @overload
    def __getitem__(self, index: int) -> Line: ...

    @overload
    def __getitem__(self, index: slice) -> list[Line]: ...

    def __getitem__(self, index: int | slice) -> Line | list[Line]:
        return self._lines()[index]

    def __iter__(self) -> Iterator[Line]:
        return iter(self._lines())


NO_LINES = CommittedLines("", [])


def check_agent_id(agent_id: str) -> str:
    """Return `agent_id` if it is 1–128 characters of A-Za-z0-9._:- , else raise BadRequest."""
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise BadRequest(
            f"invalid agent id {agent_id[:140]!r}: use 1-128 characters of A-Z a-z 0-9 . _ : -",
            code="invalid_agent_id",
        )
    return agent_id


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every body: json.loads(text, parse_constant=...) would build a new one per call,
# which costs more than decoding a typical log line.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN: Any = getattr(_DECODER, "scan_once")  # noqa: B009 - set in __init__, missing from the stubs
_JSON_SPACE = " \t\n\r"


def _loads(text: str) -> Any:
    try:
        stripped = text.strip(_JSON_SPACE)
        try:
            value, end = _SCAN(stripped, 0)
        except StopIteration:
            end = -1
        if end != len(stripped):
            # Not one JSON value: let the full decoder say precisely what is wrong.
            return _DECODER.decode(text)
        return value
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages (null, not NoneType)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} contains an unpaired UTF-16 surrogate") from None


# Most lines are an object of these keys, spelled so, of the plain types: _plain_line reads those directly.
_PLAIN_KEYS = frozenset(("message", "level", "ts", "source"))


def _plain_line(obj: dict[str, Any], now: float, max_line_size: int) -> NewLine | None:
    """The line of an object with only _PLAIN_KEYS, when it is valid and simple; None sends it the long way,
    which gives the same line or says what is wrong."""
    message = obj.get("message")
    if type(message) is not str:
        return None
    if message.isascii():
        size = len(message)
    else:
        try:
            size = len(message.encode("utf-8"))
        except UnicodeEncodeError:
            return None
    raw_level = obj.get("level", "INFO")
    level = LEVEL_NAMES.get(raw_level) if type(raw_level) is str else None
    if level is None:
        return None
    ts = now
    raw_ts = obj.get("ts")
    if raw_ts is not None:
        try:
            ts = parse_ts(raw_ts)
        except ValueError:
            return None
    elif "ts" in obj:
        return None
    source = obj.get("source", "")
    if type(source) is not str or len(source) > 256 or not source.isascii() or size > max_line_size:
        return None
    return NewLine(ts, level, message, source, {})


def line_from_object(obj: Any, now: float, max_line_size: int) -> NewLine:
    """A NewLine from one decoded JSON value (an object or a plain string); raises ValueError."""
    if type(obj) is dict and obj.keys() <= _PLAIN_KEYS:
        line = _plain_line(obj, now, max_line_size)
        if line is not None:
            return line
    if isinstance(obj, str):
        obj = {"message": obj}
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object or a string, got {_json_type(obj)}")
    data = dict(obj)
    pop = data.pop
    picked: dict[str, Any] = {}
    for canonical, names in _ALIASES.items():
        for name in names:
            value = pop(name, _MISSING)
            if value is not _MISSING:
                if value is None:
                    # Neither a level, a time, a source nor a message: leaving the key out is how to say "none".
                    raise ValueError(f"{name!r} must not be null; leave it out instead")
                picked[canonical] = value
                break
    fields = pop("fields", _MISSING)
    if fields is _MISSING:
        fields = data
    elif not isinstance(fields, dict):
        raise ValueError("'fields' must be a JSON object")
    elif data:
        fields = {**data, **fields}
    message = picked.get("message", _MISSING)
    if message is _MISSING:
        raise ValueError("missing 'message' (or 'msg')")
    if not isinstance(message, str):
        raise ValueError(f"'message' must be a string, got {_json_type(message)}")
    try:
        size = len(message.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("'message' contains an unpaired UTF-16 surrogate") from None
    raw_level = picked.get("level", "INFO")
    # The common cases, a level name in upper or lower case, skip parsing.
    level = LEVEL_NAMES.get(raw_level) if type(raw_level) is str else None
    if level is None:
        level = parse_level(raw_level)
    ts = parse_ts(picked["ts"]) if "ts" in picked else now
    source = picked.get("source", "")
    if not isinstance(source, str):
        raise ValueError(f"'source' must be a string, got {_json_type(source)}")
    if len(source) > 256:
        raise ValueError("'source' is longer than 256 characters")
    if source:
        _check_text(source, "'source'")
    encoded_fields = None
    if fields:
        check_depth(fields)
        encoded_fields = encode_fields(fields)
        _check_text(encoded_fields, "'fields'")
        size += len(encoded_fields.encode("utf-8"))
    if size > max_line_size:
        raise ValueError(f"line is {size} bytes, above the limit of {max_line_size}")
    return NewLine(ts, level, message, source, fields, encoded_fields)


def _body_kind(content_type: str, body: bytes) -> str:
    """json, ndjson or text for a Content-Type; raises BadRequest for one Sentra cannot read."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in (
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/ndjson",
    ):
        return "ndjson"
    if media == "text/plain":
        return "text"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media in ("", "application/x-www-form-urlencoded", "application/octet-stream"):
        # curl -d sends form-urlencoded by default: read what the body plainly is.
        return "json" if body.lstrip()[:1] in (b"{", b"[") else "text"
    raise BadRequest(
        f"unsupported Content-Type {content_type[:80]!r}: send application/json, application/x-ndjson or text/plain",
        code="unsupported_media_type",
    )


def parse_body(
    body: bytes, content_type: str, *, max_line_size: int, max_lines: int, now: float | None = None
) -> NewLines:
    """Parse an ingest body (JSON object/array, NDJSON or text) into lines; any bad line rejects all."""
    now = time.time() if now is None else now
    kind = _body_kind(content_type, body)
    if _decode_in_c is not None and kind != "text":
        lines = _decode_in_c(body, kind, now, max_line_size, max_lines)
        if lines is not None:
            return lines
    return parse_body_in_python(body, kind, max_line_size=max_line_size, max_lines=max_lines, now=now)


def parse_body_in_python(body: bytes, kind: str, *, max_line_size: int, max_lines: int, now: float) -> NewLines:
    """parse_body without the compiled decoder, for a body of `kind` json, ndjson or text: the one that words errors."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8 (byte {exc.start})", code="invalid_utf8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if kind == "json":
        items = _json_items(text)
    elif kind == "ndjson":
        items = _ndjson_items(text)
    else:
        items = _text_items(text)
    if not items:
        raise BadRequest("the request has no lines", code="empty_batch")
    if len(items) > max_lines:
        raise PayloadTooLarge(
            f"the request has {len(items)} lines, above the limit of {max_lines} per request",
            code="too_many_lines",
        )
    lines = NewLines()
    for number, item in items:
        try:
            line = line_from_object(item, now, max_line_size)
        except ValueError as exc:
            raise BadRequest(f"line {number}: {exc}", code="invalid_line") from None
        lines.add(line.ts, line.level, line.message, line.source, line.fields, line.fields_json)
    return lines


def _json_items(text: str) -> list[tuple[int, Any]]:
    if not text.strip():
        return []
    try:
        value = _loads(text)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if isinstance(value, list):
        return list(enumerate(value, start=1))
    return [(1, value)]


def _ndjson_items(text: str) -> list[tuple[int, Any]]:
    items: list[tuple[int, Any]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        # A line that is one JSON value with no space around it is the common case: decode it in one call.
        # Anything else (blank, padded, invalid) takes the careful way below.
        try:
            value, end = _SCAN(raw, 0)
        except (StopIteration, ValueError, RecursionError):
            end = -1
        if end == len(raw):
            items.append((number, value))
            continue
        if not raw.strip():
            continue
        try:
            items.append((number, _loads(raw)))
        except ValueError as exc:
            raise BadRequest(f"line {number}: not valid JSON: {exc}", code="invalid_json") from None
    return items


def _text_items(text: str) -> list[tuple[int, Any]]:
    if text == "":
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return [(n, raw[:-1] if raw.endswith("\r") else raw) for n, raw in enumerate(text.split("\n"), start=1)]
