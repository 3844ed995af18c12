"""Big and mixed ingest batches store every line exactly: group commits of any size, the quick reading of plain
NDJSON lines, and every kind of line in one 1,000-line request, read back through the API and the file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningServer

from sentra.errors import BadRequest
from sentra.lines import NewLine, line_from_object, parse_body
from sentra.storage.sqlite import Store

NOW = 1_700_000_000.25

# Every kind of line: plain, aliases, fields, numeric and odd levels, times in s/ms/µs/ns and ISO 8601, sources,
# and text that JSON and SSE must carry untouched.
SAMPLES: list[Any] = [
    {"level": "info", "message": "M0:1:123 plain"},
    {"message": "no level"},
    {"level": "WARNING", "message": "upper", "source": "stdout"},
    {"level": "error", "message": "with ts", "ts": 1_700_000_123.456789},
    {"level": "debug", "message": "ms ts", "ts": 1_700_000_123_457},
    {"message": "µs ts", "ts": 1_700_000_123_456_789},
    {"message": "ns ts", "ts": 1_700_000_123_456_789_012},
    {"message": "iso ts", "ts": "2024-05-01T12:30:00.123456+02:00"},
    {"message": "naive iso ts", "ts": "2024-05-01 12:30:00"},
    {"message": "string seconds", "ts": "1700000000.5"},
    {"message": "numeric level", "level": 35},
    {"message": "string level", "level": "40"},
    {"message": "alias level", "level": "warn"},
    {"message": "mixed case", "level": "Info"},
    {"message": "padded level", "level": " info "},
    {"msg": "msg alias", "levelname": "ERROR", "timestamp": 1_700_000_001, "log_source": "stderr"},
    {"message": "fields", "request_id": "r-1", "n": 3, "nested": {"a": [1, 2.5, None, True]}},
    {"message": "fields key", "fields": {"k": "v", "deep": {"x": {"y": "z"}}}, "extra": 1},
    {"message": "agent name", "agent_name": "worker-7"},
    {"message": "unicode 🚀 é 日本語", "source": "ünï"},
    {"message": "separators a\u2028b\u2029c\u0085d", "source": "s\u2028"},
    {"message": 'quotes " and \\ backslash\tand tab'},
    {"message": "nul\x00inside and\nnewline\r\nand cr"},
    {"message": ""},
    {"message": "x" * 5000},
    {"source": "", "message": "empty source", "level": "critical"},
    "a plain string line",
    "string with \u2028 separator",
]


def _full_reading(obj: Any) -> NewLine:
    """The line as the general reader makes it: a dict subclass never takes the quick path for plain objects."""

    class Mapping(dict[str, Any]):
        pass

    return line_from_object(Mapping(obj) if isinstance(obj, dict) else obj, NOW, 256 * 1024)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: json.dumps(sample)[:40])
def test_quick_reading_of_a_line_equals_the_full_reading(sample: Any) -> None:
    assert line_from_object(sample, NOW, 256 * 1024) == _full_reading(sample)


BAD_LINES: list[tuple[str, str]] = [
    ('{"message": "x", "level": null}', "'level' must not be null; leave it out instead"),
    ('{"message": "x", "ts": null}', "'ts' must not be null; leave it out instead"),
    ('{"message": null}', "'message' must not be null; leave it out instead"),
    ('{"message": 5}', "'message' must be a string, got number"),
    ('{"level": "info"}', "missing 'message' (or 'msg')"),
    ('{"message": "x", "level": "loud"}', "unknown level 'loud'; use DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ('{"message": "x", "level": true}', "level must be a name such as INFO or a number such as 20"),
    ('{"message": "x", "ts": "soon"}', "ts 'soon' is neither epoch seconds nor an ISO 8601 time"),
    ('{"message": "x", "ts": -5}', "ts -5 is out of range: give a time after 1970 in s, ms, µs or ns"),
    ('{"message": "x", "source": 7}', "'source' must be a string, got number"),
    ('{"message": "x", "source": "' + "s" * 257 + '"}', "'source' is longer than 256 characters"),
    ('{"message": "\\ud800"}', "'message' contains an unpaired UTF-16 surrogate"),
    ('{"message": "x", "source": "\\udc00"}', "'source' contains an unpaired UTF-16 surrogate"),
    ('{"message": "' + "y" * 300 + '"}', "line is 300 bytes, above the limit of 200"),
]


@pytest.mark.parametrize("line,error", BAD_LINES, ids=[bad[0][:40] for bad in BAD_LINES])
def test_a_bad_plain_line_is_refused_with_what_is_wrong(line: str, error: str) -> None:
    body = ('{"message": "fine"}\n' * 3 + line + "\n").encode()
    with pytest.raises(BadRequest) as caught:
        parse_body(body, "application/x-ndjson", max_line_size=200, max_lines=100, now=NOW)
    assert caught.value.message == f"line 4: {error}"


def test_ndjson_lines_with_space_around_or_separators_only_read_as_before() -> None:
    body = ' {"message": "lead"}\n{"message": "trail"} \r\n\n\u2028\n\t"text"\t\n{"message":"last"}'
    lines = parse_body(body.encode(), "application/x-ndjson", max_line_size=1000, max_lines=100, now=NOW)
    assert [line.message for line in lines] == ["lead", "trail", "text", "last"]
    with pytest.raises(BadRequest) as caught:
        parse_body(b'{"message": "a"}\n{"message": "b"} x\n', "application/x-ndjson", max_line_size=99, max_lines=9)
    assert caught.value.message.startswith("line 2: not valid JSON: Extra data")


def _sample_line(n: int) -> Any:
    sample = SAMPLES[n % len(SAMPLES)]
    if isinstance(sample, str):
        return f"{sample} #{n}"
    return {**sample, "message": f"{sample.get('message', sample.get('msg'))} #{n}"}


async def test_group_commits_of_every_size_store_every_line_exactly(tmp_path: Path) -> None:
    store = Store(tmp_path / "sentra.db")
    await store.open()
    sizes = [1, 3, 16, 17, 63, 64, 65, 1000, 1023, 1024, 1025, 2049, 5000, 7]
    batches: dict[str, list[NewLine]] = {"a1": [], "a2": []}
    requests = []
    for number, size in enumerate(sizes):
        agent = ("a1", "a2")[number % 2]
        lines = [line_from_object(_sample_line(n), NOW + number, 256 * 1024) for n in range(size)]
        batches[agent].extend(lines)
        requests.append(store.append_lines(agent, "alice", lines))
    try:
        # All queued at once: the writer commits them in a few batches of many requests each.
        await asyncio.gather(*requests)
        for agent, expected in batches.items():
            record = await store.get_agent(agent)
            assert record is not None
            stored = await store.lines_after(record, 0, limit=len(expected) + 10)
            assert [line.seq for line in stored] == list(range(1, len(expected) + 1))
            got = [(line.ts, line.level, line.message, line.source, line.fields) for line in stored]
            assert got == [(new.ts, new.level, new.message, new.source, new.fields) for new in expected]
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "sentra.db") as conn:
        count, nulls = conn.execute("SELECT count(*), count(*) - count(agent_pk) FROM lines").fetchone()
    conn.close()
    assert (count, nulls) == (sum(sizes), 0)


async def test_thousand_line_ndjson_request_reads_back_exactly(server: RunningServer) -> None:
    objects = [_sample_line(n) for n in range(1000)]
    body = "\n".join(json.dumps(obj, ensure_ascii=n % 2 == 0) for n, obj in enumerate(objects)) + "\n"
    expected = parse_body(body.encode(), "application/x-ndjson", max_line_size=256 * 1024, max_lines=10000)
    async with server.client("alice") as alice:
        response = await alice.post(
            "/api/agents/big/logs", content=body.encode(), headers={"Content-Type": "application/x-ndjson"}
        )
        assert response.json() == {"accepted": 1000, "first_seq": 1, "last_seq": 1000}
        history = await alice.get("/api/agents/big/logs", params={"limit": 1000})
        lines = history.json()["lines"]
        assert (await alice.get("/api/agents/big")).json()["name"] == "worker-7"
    assert [line["seq"] for line in lines] == list(range(1, 1001))
    got = [(line["message"], line["level"], line["source"], line["fields"]) for line in lines]
    assert got == [(new.message, new.level, new.source, new.fields) for new in expected]
    with sqlite3.connect(server.db) as conn:
        rows = conn.execute("SELECT ts, level, source, message, fields FROM lines ORDER BY seq").fetchall()
    conn.close()
    levels = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
    # Stored compact, as JSON without spaces: the text json.dumps gives with separators=(",", ":").
    compact = {"ensure_ascii": False, "separators": (",", ":")}
    fields = [json.dumps(new.fields, **compact) if new.fields else None for new in expected]
    assert [row[1:] for row in rows] == [
        (levels[new.level], new.source, new.message, text) for new, text in zip(expected, fields, strict=True)
    ]
    # Lines without a ts take the time their request arrived; the others keep theirs to the last bit.
    explicit = [n for n, obj in enumerate(objects) if isinstance(obj, dict) and {"ts", "timestamp"} & obj.keys()]
    assert [rows[n][0] for n in explicit] == [expected[n].ts for n in explicit]
    assert len({rows[n][0] for n in range(1000) if n not in explicit}) == 1
