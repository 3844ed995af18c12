"""Ingest bodies decoded in C (msgspec) and by the pure-Python parser give the same lines, stored byte for byte the
same, or the same 4xx naming the same line: for realistic agent batches, and for generated bodies of valid and
invalid lines (aliases, unknown keys, nested fields, Unicode, bad levels and times, blank lines, CRLF, limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentra.build import stage
from sentra.errors import ApiError
from sentra.ingest_decode import decode_body
from sentra.lines import NewLine, parse_body, parse_body_in_python

NOW = 1_765_000_000.25
NDJSON = "application/x-ndjson"
LIMIT = 256 * 1024

Outcome = list[NewLine] | str


def _python(body: bytes, kind: str, max_line_size: int = LIMIT, max_lines: int = 10_000) -> Outcome:
    try:
        return parse_body_in_python(body, kind, max_line_size=max_line_size, max_lines=max_lines, now=NOW)
    except ApiError as exc:
        return f"{exc.status} {exc.code}: {exc.message}"


def _served(body: bytes, content_type: str, max_line_size: int = LIMIT, max_lines: int = 10_000) -> Outcome:
    try:
        return parse_body(body, content_type, max_line_size=max_line_size, max_lines=max_lines, now=NOW)
    except ApiError as exc:
        return f"{exc.status} {exc.code}: {exc.message}"


def agent_line(n: int) -> bytes:
    """A line as agents send it: an access-log message, a level, a source and a small fields object."""
    route = f"/api/v1/items/{n % 13}"
    return json.dumps(
        {
            "message": f"GET {route}?page={n % 50} {200 if n % 7 else 404} {n % 97 / 10 + 1:.1f}ms",
            "level": "INFO" if n % 7 else "warning",
            "source": "web",
            "fields": {"route": route, "status": 200 if n % 7 else 404, "user": f"ü{n}"},
        },
        ensure_ascii=n % 2 == 0,
    ).encode()


def test_agent_batch_is_decoded_in_c_into_the_lines_python_makes() -> None:
    body = b"\n".join(agent_line(n) for n in range(1000)) + b"\n"
    compiled = decode_body(body, "ndjson", NOW, LIMIT, 10_000)
    assert compiled is not None, "the compiled decoder refused a plain agent batch"
    assert compiled == _python(body, "ndjson") == _served(body, NDJSON)
    assert compiled[7].level == "WARNING" and compiled[7].fields["status"] == 404
    # Stored compact, non-ASCII as it is, whether the agent escaped it (odd lines) or not, as the Python parser
    # stores it.
    assert compiled[1].fields_json == '{"route":"/api/v1/items/1","status":200,"user":"ü1"}'
    assert compiled[2].fields_json == '{"route":"/api/v1/items/2","status":200,"user":"ü2"}'


def test_aliases_and_json_arrays_are_decoded_in_c() -> None:
    lines = [
        {"msg": "a", "levelname": "warn", "timestamp": "2026-12-07T10:00:00Z", "log_source": "worker"},
        {"message": "b", "level": 40, "ts": 1_765_000_000_123},
        {"message": "c", "fields": {}},
    ]
    body = json.dumps(lines).encode()
    compiled = decode_body(body, "json", NOW, LIMIT, 10_000)
    assert compiled is not None
    assert compiled == _python(body, "json")
    assert [(line.level, line.source, line.ts) for line in compiled] == [
        ("WARNING", "worker", 1_796_637_600.0),
        ("ERROR", "", 1_765_000_000.123),
        ("INFO", "", NOW),
    ]


def test_one_bad_line_gets_the_python_parsers_error_naming_it() -> None:
    good = [agent_line(n) for n in range(5)]
    cases = {
        b'{"message": "x", "level": "LOUD"}': "400 invalid_line: line 4: unknown level 'LOUD'",
        b'{"message": "x"} {"message": "y"}': "400 invalid_json: line 4: not valid JSON",
        b'{"message": null}': "400 invalid_line: line 4: 'message' must not be null",
        b'{"message": "x", "fields": [1]}': "400 invalid_line: line 4: 'fields' must be a JSON object",
    }
    for bad, error in cases.items():
        body = b"\n".join([*good[:3], bad, *good[3:]])
        assert decode_body(body, "ndjson", NOW, LIMIT, 10_000) is None
        outcome = _served(body, NDJSON)
        assert isinstance(outcome, str) and outcome.startswith(error), outcome
        assert outcome == _python(body, "ndjson")


def test_blank_lines_keep_the_line_numbers_of_errors() -> None:
    body = b'{"message": "a"}\n\n  \r\n{"message": "b", "ts": -5}\n'
    assert _served(body, NDJSON) == _python(body, "ndjson")
    assert str(_served(body, NDJSON)).startswith("400 invalid_line: line 4: ts -5 is out of range")


def test_limits_are_the_python_parsers() -> None:
    body = b"\n".join(agent_line(n) for n in range(20))
    assert _served(body, NDJSON, max_lines=19) == _python(body, "ndjson", max_lines=19)
    assert "above the limit of 19 per request" in str(_served(body, NDJSON, max_lines=19))
    size = len(_python(body, "ndjson")[0].message.encode()) + len(str(_python(body, "ndjson")[0].fields_json).encode())
    for limit in (size - 1, size, size + 1):
        assert _served(body, NDJSON, max_line_size=limit) == _python(body, "ndjson", max_line_size=limit)
    deep: Any = "leaf"
    for _ in range(120):
        deep = {"d": deep}
    body = json.dumps({"message": "deep", "fields": deep}).encode()
    assert _served(body, NDJSON) == _python(body, "ndjson")
    assert "nested too deeply" in str(_served(body, NDJSON))


# Generated bodies: every key the parser reads, under each of its names, with good and bad values.
TEXT = st.text(st.characters(codec="utf-8"), max_size=10) | st.sampled_from(["", "é😀", "\x00\r\u2028", '"\\'])
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
LEVEL = st.sampled_from(["INFO", "info", "Warning", "WARN", "fatal", " error ", "30", "LOUD", ""]) | st.sampled_from(
    [0, 10, 25, 50, 99, -1, 20.0, 20.5, True, None]
)
TS = st.one_of(
    st.sampled_from([1_765_000_000, 1_765_000_000_000, 1_765_000_000_000_000, 10**19, 10**20, -1, 0, True, None]),
    st.floats(-1e22, 1e22),
    st.sampled_from(["2026-12-07T10:00:00+01:00", "2026-12-07 10:00", "1765000000.5", "yesterday", ""]),
)
KEYS = {
    "message": TEXT | st.integers(),
    "msg": TEXT,
    "level": LEVEL,
    "levelname": LEVEL,
    "ts": TS,
    "timestamp": TS,
    "source": TEXT | st.just("s" * 257) | st.integers(),
    "log_source": TEXT,
    "fields": st.dictionaries(TEXT, JSON_VALUE, max_size=4) | JSON_VALUE,
    "extra": JSON_VALUE,
}

GOOD = {
    "message": TEXT,
    "level": st.sampled_from(["INFO", "info", "WARN", "error", 20, 35, "10"]),
    "ts": st.sampled_from([1_765_000_000, 1_765_000_000_000, 1_765_000_000.5, "2026-12-07T10:00:00Z"]),
    "source": TEXT,
    "fields": st.dictionaries(TEXT, JSON_VALUE, max_size=4),
}


@st.composite
def line_texts(draw: st.DrawFn) -> bytes:
    """One line of a body: mostly an object of some of the parser's keys, sometimes something else."""
    odd = draw(st.integers(0, 9))
    if odd == 0:
        text: str = draw(st.sampled_from(["", "   ", "{bad", '"plain"', "[1]", '{"message": "a"} {"message": "b"}']))
        return text.encode()
    names = draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=5, unique=True))
    if odd > 2:
        names = ["message", *[name for name in names if name != "message"]]
    # Mostly values the parser takes, so that most bodies get through and their lines are compared.
    values = KEYS if odd < 4 else GOOD
    obj = {name: draw(values.get(name, KEYS[name])) for name in names}
    compact = draw(st.booleans())
    encoded = json.dumps(obj, ensure_ascii=draw(st.booleans()), separators=(",", ":") if compact else None)
    return encoded.encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """An NDJSON body (LF or CRLF, maybe a final newline) or a JSON body (one object or an array)."""
    lines = draw(st.lists(line_texts(), min_size=0, max_size=6))
    if draw(st.booleans()):
        end = draw(st.sampled_from([b"\n", b"\r\n"]))
        return end.join(lines) + draw(st.sampled_from([b"", end])), NDJSON
    inner = b",".join(line or b"null" for line in lines)
    return (b"[" + inner + b"]" if draw(st.booleans()) or not lines else lines[0] or b"{}"), "application/json"


@pytest.mark.slow  # 1,500 generated bodies, about 10 s
@given(bodies(), st.sampled_from([LIMIT, 60]), st.sampled_from([10_000, 3]))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_bodies_read_the_same_in_c_and_in_python(
    sent: tuple[bytes, str], max_line_size: int, max_lines: int
) -> None:
    body, content_type = sent
    kind = "ndjson" if content_type == NDJSON else "json"
    expected = _python(body, kind, max_line_size, max_lines)
    assert _served(body, content_type, max_line_size, max_lines) == expected
    compiled = decode_body(body, kind, NOW, max_line_size, max_lines)
    if compiled is not None:
        assert compiled == expected
        for line in compiled:
            # The stored text is the fields, as JSON.
            assert (line.fields_json is None) == (not line.fields)
            assert line.fields_json is None or json.loads(line.fields_json) == line.fields


@pytest.mark.slow  # lays out the pyz's files and imports them in a child interpreter
def test_the_pyz_reads_bodies_in_python_without_msgspec(tmp_path: Path) -> None:
    stage(tmp_path)
    assert not (tmp_path / "msgspec").exists() and not (tmp_path / "sentra" / "ingest_decode.py").exists()
    script = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from sentra import lines\n"
        "assert lines._decode_in_c is None\n"
        'body = b\'{"message": "a", "fields": {"k": 1}}\\n{"msg": "b"}\\n\'\n'
        "print(lines.parse_body(body, 'application/x-ndjson', max_line_size=99, max_lines=9, now=1.0))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "NewLine(ts=1.0, level='INFO', message='a', source='', fields={'k': 1}, fields_json='{\"k\":1}')" in done.stdout
    )
