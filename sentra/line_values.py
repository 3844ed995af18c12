"""What a log line's values may be (level names and numbers, times, the depth of `fields`) and the parsed line
that the ingest parsers hand to the store: shared by the pure-Python parser and the compiled one."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
LEVEL_ALIASES: dict[str, str] = {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG", "ERR": "ERROR"}
MAX_TS = 1e11  # seconds: the year 5138
# Every reader re-encodes a line inside its answer, a few levels deeper than it arrived; Python's JSON encoder
# stops near 1000 levels, so a line that parsed but nests close to that could be stored yet never read back.
MAX_FIELDS_DEPTH = 100
# Level names as most loggers spell them, to their canonical form without parsing.
# Stored levels are numbers; a number no name has (never written by Sentra) reads back as INFO.
LEVEL_BY_NUMBER: dict[int, str] = {number: name for name, number in LEVELS.items()}
LEVEL_NAMES: dict[str, str] = {**{name: name for name in LEVELS}, **{name.lower(): name for name in LEVELS}}


@dataclass(slots=True)
class NewLine:
    """A parsed, validated line before the store gives it a seq."""

    ts: float
    level: str
    message: str
    source: str
    fields: dict[str, Any]
    # `fields` as stored (JSON, None when empty), encoded once while checking the line's size.
    fields_json: str | None = None


def parse_level(value: Any) -> str:
    """An upper-case level name from a name in any case or a numeric logging level."""
    if isinstance(value, bool):
        raise ValueError("level must be a name such as INFO or a number such as 20")
    if isinstance(value, int | float):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"level {value} is not a whole number (or not finite)")
        if value < 0:
            raise ValueError(f"level {value} is negative")
        number = int(value)
        name = "DEBUG"
        for level_name, level_no in LEVELS.items():
            if number >= level_no:
                name = level_name
        return name
    if isinstance(value, str):
        upper = value.strip().upper()
        if upper.isdigit():
            return parse_level(int(upper))
        upper = LEVEL_ALIASES.get(upper, upper)
        if upper in LEVELS:
            return upper
        raise ValueError(f"unknown level {value[:40]!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    raise ValueError("level must be a name such as INFO or a number such as 20")


def normalize_epoch(number: float) -> float:
    """Seconds since the epoch from seconds, milliseconds, microseconds or nanoseconds."""
    for _ in range(3):
        if abs(number) < MAX_TS:  # before the year 5138 in seconds: it is seconds
            break
        number /= 1000.0
    return _in_range(number)


def _in_range(seconds: float) -> float:
    # Every reader (ISO 8601 in seed 001's stream, the viewer) must be able to show the time.
    if not 0 <= seconds < MAX_TS:
        raise ValueError(f"ts {seconds:.6g} is out of range: give a time after 1970 in s, ms, µs or ns")
    return seconds


def parse_ts(value: Any) -> float:
    """Epoch seconds from a number (s, ms, µs or ns) or an ISO 8601 string (UTC if no offset)."""
    if isinstance(value, bool):
        raise ValueError("ts must be epoch seconds or an ISO 8601 time")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("ts must be a finite number")
        if isinstance(value, int) and abs(value) >= 10**20:
            raise ValueError("ts is too large even for nanoseconds")
        return normalize_epoch(float(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return parse_ts(number)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"ts {value[:60]!r} is neither epoch seconds nor an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _in_range(moment.timestamp())
    raise ValueError("ts must be epoch seconds or an ISO 8601 time")


def check_depth(value: Any) -> None:
    """Raise ValueError if containers in `value` nest deeper than MAX_FIELDS_DEPTH (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_FIELDS_DEPTH:
                    raise ValueError(f"'fields' nested too deeply: at most {MAX_FIELDS_DEPTH} levels")
                stack.append((child, depth + 1))


# One encoder for every line, the C encoder json.dumps(fields, ensure_ascii=False) itself uses (same text): dumps
# builds a JSONEncoder and a C encoder per call, which costs more than encoding a typical line's fields (1.05 ms
# against 0.5 ms for 1,000 two-key objects). No circular-reference check: fields come from parsed JSON or protobuf.
_FIELDS_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_C_ENCODE: Any = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None,
        _FIELDS_ENCODER.default,
        encode_basestring,
        None,
        _FIELDS_ENCODER.key_separator,
        _FIELDS_ENCODER.item_separator,
        False,
        False,
        False,  # allow_nan: a number like 1e400 reads as infinity, which JSON (and so every reader) cannot carry
    )
)


def encode_fields(fields: dict[str, Any]) -> str:
    """`fields` as stored: the text json.dumps(fields, ensure_ascii=False) gives; ValueError for a number JSON has
    no text for (one too large for a float, such as 1e400, reads as infinity)."""
    try:
        if _C_ENCODE is None:
            return _FIELDS_ENCODER.encode(fields)
        return "".join(_C_ENCODE(fields, 0))
    except ValueError:
        raise ValueError("'fields' holds a number too large for JSON (such as 1e400)") from None
