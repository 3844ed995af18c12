"""Ingest bodies decoded and validated in C: a whole JSON or NDJSON body into typed records in one msgspec call,
then checked against the same limits as sentra/lines.py. Anything unusual or wrong is refused (None), and the
pure-Python parser reads the body again: it gives the same lines, or the 400 naming the line.

`fields` is decoded into a dict, not kept as msgspec.Raw: live subscribers get the line as parsed, and the text
stored is line_values.encode_fields', the one encoder both parsers use, so that they store the same bytes (Raw
would keep the agent's spacing and escapes). The lines come out as NewLines, the rows the writer binds.
sentra.pyz carries no compiled code and goes without this module (msgspec is compiled-only in sentra/build.py).

Measured on the issue's 2-core machine, parse_body of 1,000 agent lines (message, level, source, a two-key
fields object): 5.1 ms with the Python parser before this module, 1.8 ms with it (docs/performance.md, eleventh
round, "Ingest bodies decoded in C"), 1.3 ms with compact fields and rows (thirteenth round)."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from sentra.line_values import (
    COMPACT_JSON,
    LEVEL_NAMES,
    LEVELS,
    MAX_FIELDS_DEPTH,
    ROW_WIDTH,
    NewLines,
    check_depth,
    encode_fields,
    parse_level,
    parse_ts,
)

MAX_SOURCE = 256  # characters, as sentra/lines.py checks


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    """One line as agents send it. An unknown key goes into `fields` in the Python parser: refused here."""

    message: str | UnsetType = UNSET
    msg: str | UnsetType = UNSET
    level: str | int | float | UnsetType = UNSET
    levelname: str | int | float | UnsetType = UNSET
    ts: int | float | str | UnsetType = UNSET
    timestamp: int | float | str | UnsetType = UNSET
    source: str | UnsetType = UNSET
    log_source: str | UnsetType = UNSET
    fields: dict[str, Any] | UnsetType = UNSET


class _Plain(msgspec.Struct, forbid_unknown_fields=True):
    """A line without any second name (msg, levelname, timestamp, log_source), as most agents send them: read a
    column at a time. A body with one such name fails this decoder early and is read as _Records."""

    message: str
    level: str | int | float = "INFO"
    ts: int | float | str | UnsetType = UNSET
    source: str = ""
    fields: dict[str, Any] = {}


_PLAIN = msgspec.json.Decoder(_Plain | list[_Plain])
_RECORDS = msgspec.json.Decoder(_Record | list[_Record])
_Picked = tuple[Any, Any, Any, Any]
# Level names as loggers spell them, upper or lower case, to the number stored.
LEVEL_NUMBERS: dict[Any, int] = {name: LEVELS[canonical] for name, canonical in LEVEL_NAMES.items()}


def decode_body(body: bytes, kind: str, now: float, max_line_size: int, max_lines: int) -> NewLines | None:
    """The lines of a JSON ("json") or NDJSON ("ndjson") body, or None when the Python parser must read it."""
    if kind == "ndjson":
        # Read as one JSON array, its lines turned into commas: a blank line, two values on one line or a line
        # break inside a value leaves a comma where JSON allows none, and the Python parser reads the body instead
        # (msgspec's decode_lines skips blank lines and reads two values on one line). 0.39 ms for 1,000 agent
        # lines, against 0.49 for decode_lines with the counts that ruled those out.
        text = body[:-1] if body.endswith(b"\n") else body
        body = b"[" + text.replace(b"\n", b",") + b"]"
    try:
        plain = _PLAIN.decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        plain_records = plain if isinstance(plain, list) else [plain]
        if not 0 < len(plain_records) <= max_lines:
            return None
        return _columns(plain_records, now, max_line_size)
    try:
        value = _RECORDS.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    records = value if isinstance(value, list) else [value]
    if not 0 < len(records) <= max_lines:
        return None
    return _checked(records, now, max_line_size)


def _columns(records: list[_Plain], now: float, max_line_size: int) -> NewLines | None:
    """NewLines of plain records, as line_from_object makes each line, built a column at a time (a comprehension
    or a map per column, where _checked takes a dozen steps per line); None where the Python parser must say what
    is wrong."""
    count = len(records)
    sources = [record.source for record in records]
    if max(map(len, sources)) > MAX_SOURCE:
        return None
    given = [record.level for record in records]
    levels = list(map(LEVEL_NUMBERS.get, given))
    if None in levels:  # a number, or a name spelled otherwise
        try:
            levels = [
                LEVELS[parse_level(raw)] if level is None else level for level, raw in zip(levels, given, strict=True)
            ]
        except ValueError:
            return None
    times = [record.ts for record in records]
    if times.count(UNSET) == count:
        times = [now] * count
    else:
        try:
            times = [now if raw is UNSET else parse_ts(raw) for raw in times]
        except ValueError:
            return None
    fields = [record.fields for record in records]
    # As encode_fields writes them: msgspec decoded these, so they hold no infinity for its encoder to write as null.
    texts = [COMPACT_JSON(value).decode() if value else None for value in fields]
    messages = [record.message for record in records]
    longest = max(map(len, filter(None, texts)), default=0)
    # A text of n characters nests at most n/2 deep: only longer ones may need a look.
    if longest > 2 * MAX_FIELDS_DEPTH:
        for value, text in zip(fields, texts, strict=True):
            if text is not None and text.count("{") + text.count("[") > MAX_FIELDS_DEPTH:
                try:
                    check_depth(value)
                except ValueError:
                    return None
    # A character is at most 4 bytes of UTF-8: only bodies with long lines need each line's size.
    if 4 * (max(map(len, messages)) + longest) > max_line_size:
        for message, text in zip(messages, texts, strict=True):
            if len(message.encode("utf-8")) + (len(text.encode("utf-8")) if text else 0) > max_line_size:
                return None
    rows: list[Any] = [None] * (ROW_WIDTH * count)
    rows[2::ROW_WIDTH] = times
    rows[3::ROW_WIDTH] = levels
    rows[4::ROW_WIDTH] = sources
    rows[5::ROW_WIDTH] = messages
    rows[6::ROW_WIDTH] = texts
    lines = NewLines()
    lines.rows = rows
    lines.fields = fields
    return lines


def _checked(records: list[_Record], now: float, max_line_size: int) -> NewLines | None:
    """The records as NewLines, exactly as line_from_object makes each line; None at the first it would refuse."""
    lines = NewLines()
    rows: list[Any] = lines.rows
    add_row = rows.extend
    add_fields = lines.fields.append
    levels = LEVEL_NUMBERS
    for record in records:
        if record.msg is UNSET and record.timestamp is UNSET and record.levelname is UNSET:
            message, raw_level, raw_ts, source = record.message, record.level, record.ts, record.source
        else:
            picked = _aliased(record)
            if picked is None:
                return None
            message, raw_level, raw_ts, source = picked
        if record.log_source is not UNSET:
            if source is not UNSET:
                return None  # the second name stays in `fields`: the Python parser's way
            source = record.log_source
        if message is UNSET:
            return None
        size = len(message) if message.isascii() else len(message.encode("utf-8"))
        level = 20 if raw_level is UNSET else levels.get(raw_level) if type(raw_level) is str else None
        if level is None:
            try:
                level = LEVELS[parse_level(raw_level)]
            except ValueError:
                return None
        if raw_ts is UNSET:
            ts = now
        else:
            try:
                ts = parse_ts(raw_ts)
            except ValueError:
                return None
        if source is UNSET:
            source = ""
        elif len(source) > MAX_SOURCE:
            return None
        fields = record.fields
        encoded = None
        if fields is UNSET:
            fields = {}
        elif fields:
            try:
                encoded = encode_fields(fields)
            except (RecursionError, ValueError):
                return None  # the parser in Python says what is wrong
            # Fewer brackets than levels allowed (strings' included): cannot nest too deep, no need to walk it.
            if encoded.count("{") + encoded.count("[") > MAX_FIELDS_DEPTH:
                try:
                    check_depth(fields)
                except ValueError:
                    return None
            size += len(encoded) if encoded.isascii() else len(encoded.encode("utf-8"))
        if size > max_line_size:
            return None
        add_row((None, None, ts, level, source, message, encoded))
        add_fields(fields)
    return lines


def _aliased(record: _Record) -> _Picked | None:
    """message, level, ts and source of a record that uses msg, levelname or timestamp; None if it uses both names
    of one (the second stays in `fields`, as only the Python parser does)."""
    picked = []
    for first, second in (
        (record.message, record.msg),
        (record.level, record.levelname),
        (record.ts, record.timestamp),
    ):
        if first is not UNSET and second is not UNSET:
            return None
        picked.append(second if first is UNSET else first)
    return picked[0], picked[1], picked[2], record.source
