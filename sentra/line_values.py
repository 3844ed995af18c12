"""What a log line's values may be (level names and numbers, times, the depth of `fields`) and the parsed line
that the ingest parsers hand to the store: shared by the pure-Python parser and the compiled one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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


# A stored line's columns, in the order the SQLite writer binds them: agent_pk, seq, ts, level number, source,
# message, fields (JSON text, or NULL when there are none).
ROW_WIDTH = 7


class NewLines:
    """One request's parsed, validated lines as the values of their rows, flat, ROW_WIDTH a line, with agent_pk
    and seq left None for the writer; and each line's `fields` as a dict, which live subscribers get.

    The SQLite writer binds the rows as they are, with no Python step per line; NewLine objects are made only for
    code that iterates (the PostgreSQL writer, attachments, the OTLP and bridge paths build from them)."""

    __slots__ = ("fields", "rows")

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.fields: list[dict[str, Any]] = []

    @classmethod
    def of(cls, lines: Iterable[NewLine]) -> NewLines:
        """The lines as NewLines (`lines` itself if it is one); fields are encoded where the parser did not."""
        if isinstance(lines, NewLines):
            return lines
        batch = cls()
        for line in lines:
            batch.add(line.ts, line.level, line.message, line.source, line.fields, line.fields_json)
        return batch

    def add(
        self, ts: float, level: str, message: str, source: str, fields: dict[str, Any], fields_json: str | None
    ) -> None:
        """Append one valid line; `fields_json` is its fields' stored text (encoded here when None)."""
        if fields_json is None and fields:
            fields_json = encode_fields(fields)
        self.rows += (None, None, ts, LEVELS[level], source, message, fields_json)
        self.fields.append(fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NewLines) and self.rows == other.rows and self.fields == other.fields

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"NewLines({list(self)!r})"

    def __getitem__(self, index: int) -> NewLine:
        at = range(len(self.fields))[index] * ROW_WIDTH
        rows = self.rows
        ts, level, source, message, fields_json = rows[at + 2 : at + ROW_WIDTH]
        return NewLine(ts, LEVEL_BY_NUMBER[level], message, source, self.fields[at // ROW_WIDTH], fields_json)

    def __iter__(self) -> Iterator[NewLine]:
        return map(self.__getitem__, range(len(self.fields)))


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


# `fields` as stored is compact JSON: msgspec's encoder where it is installed (0.08 ms for 1,000 two-key objects,
# against 0.5 ms for json's C encoder), json's otherwise (sentra.pyz), which writes the same text but for floats of
# 1e16 and above (1e16 against 1e+16). One encoder per process, so both parsers store the same bytes.
_STRICT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"))
try:
    from msgspec import EncodeError as _EncodeError
    from msgspec.json import Encoder as _Encoder
except ImportError:  # sentra.pyz carries no compiled code
    COMPACT_JSON: Any = None
else:
    COMPACT_JSON = _Encoder().encode  # bytes of compact JSON: the one msgspec encoder of stored fields


def encode_fields(fields: dict[str, Any]) -> str:
    """`fields` as stored, compact JSON; ValueError for a number JSON has no text for (one too large for a float,
    such as 1e400, reads as infinity)."""
    if COMPACT_JSON is not None:
        try:
            data = COMPACT_JSON(fields)
        except (_EncodeError, UnicodeEncodeError, OverflowError):
            pass  # json's encoder keeps what msgspec's refuses (an unpaired surrogate): the line's check words it
        else:
            text: str = data.decode()
            if "null" in text:  # msgspec writes infinity and NaN as null: only then look closer
                _check_finite(fields)
            return text
    _check_finite(fields)
    return _STRICT.encode(fields)


def _check_finite(fields: dict[str, Any]) -> None:
    try:
        _STRICT.encode(fields)
    except ValueError:
        raise ValueError("'fields' holds a number too large for JSON (such as 1e400)") from None
