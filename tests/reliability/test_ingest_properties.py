"""Property tests of ingest: whatever bytes arrive, Sentra either refuses them with a 4xx that says why, or stores
lines that read back exactly as they were sent (Unicode, emoji, NUL, CR/LF, lines of 64 KiB and more).

The parser is driven directly with many examples, and over HTTP against a real server with fewer;
SENTRA_PROPERTY_EXAMPLES sets the HTTP examples per test (short default for CI).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import make_token
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from processes import ServerProcess

from sentra.errors import ApiError
from sentra.ingest_decode import decode_body
from sentra.line_values import encode_fields
from sentra.lines import LEVELS, NewLines, parse_body, parse_body_in_python

from .support import knob, record_figures

pytestmark = pytest.mark.slow  # property tests against a server child

HTTP_EXAMPLES = int(knob("SENTRA_PROPERTY_EXAMPLES", 100))
MAX_LINE_SIZE = 256 * 1024
CONTENT_TYPES = [
    "application/json",
    "application/x-ndjson",
    "text/plain",
    "text/plain; charset=utf-8",
    "",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "image/png",
]
ALIASES = {"message", "msg", "ts", "timestamp", "level", "levelname", "source", "log_source", "fields"}
counted: dict[str, int] = {"accepted": 0, "refused": 0, "lines": 0}

# Text as people and programs log it: any code point but lone surrogates, with the awkward ones made common.
AWKWARD = st.sampled_from(["\x00", "\r", "\n", "\r\n", "\u2028", "\u0085", "\ufeff", "😀", "👩‍💻", "\t", '"', "\\"])
TEXT = st.lists(st.one_of(st.text(max_size=12), AWKWARD), max_size=8).map("".join)
# Long lines: a short piece repeated, up to ~300 KB once encoded (so some go over the 256 KiB limit).
LONG = st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=6), st.integers(1, 12000))
MESSAGE = st.one_of(TEXT, TEXT, TEXT, LONG)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def line_objects(draw: st.DrawFn) -> dict[str, Any]:
    """One line as a client would send it: message, maybe level, source, fields and extra keys."""
    line: dict[str, Any] = {draw(st.sampled_from(["message", "msg"])): draw(MESSAGE)}
    if draw(st.booleans()):
        line[draw(st.sampled_from(["level", "levelname"]))] = draw(
            st.sampled_from([*LEVELS, "warn", "Error", "fatal", "trace", 10, 20, 35, 50, 99])
        )
    if draw(st.booleans()):
        line[draw(st.sampled_from(["source", "log_source"]))] = draw(TEXT.filter(lambda s: len(s) <= 256))
    if draw(st.booleans()):
        line["fields"] = draw(st.dictionaries(TEXT, JSON_VALUE, max_size=4))
    extra = draw(st.dictionaries(TEXT.filter(lambda key: key not in ALIASES), JSON_VALUE, max_size=3))
    return {**extra, **line}


def expected_fields(line: dict[str, Any]) -> dict[str, Any]:
    """Every key that is not a known one lands in fields; an explicit `fields` object wins on a clash."""
    extra = {key: value for key, value in line.items() if key not in ALIASES}
    return {**extra, **line.get("fields", {})}


def expected_level(line: dict[str, Any]) -> str:
    """The level name Sentra stores for a line."""
    value = line.get("level", line.get("levelname", "INFO"))
    if isinstance(value, int):
        return (
            "DEBUG"
            if value < 20
            else "INFO"
            if value < 30
            else "WARNING"
            if value < 40
            else ("ERROR" if value < 50 else "CRITICAL")
        )
    name = value.upper()
    return {"WARN": "WARNING", "FATAL": "CRITICAL", "TRACE": "DEBUG"}.get(name, name)


def size_of(line: dict[str, Any]) -> int:
    """The size Sentra holds against limits.max_line_size: the message and the fields, as UTF-8."""
    message = line.get("message", line.get("msg"))
    fields = expected_fields(line)
    encoded = encode_fields(fields).encode() if fields else b""  # as stored: compact JSON
    return len(message.encode()) + len(encoded)


def text_lines(body: bytes) -> list[str]:
    """What a text/plain body means: one line per \\n, a final \\n ending the last one, one \\r before \\n dropped."""
    text = body.decode("utf-8").removeprefix("\ufeff")
    if text.endswith("\n"):
        text = text[:-1]
    return [part.removesuffix("\r") for part in text.split("\n")]


# ---- the parser, directly: many examples, no server -----------------------------------------------------------


@settings(max_examples=5 * HTTP_EXAMPLES, deadline=None, database=None)
@given(body=st.binary(max_size=400) | TEXT.map(str.encode), content_type=st.sampled_from(CONTENT_TYPES))
def test_parser_turns_any_bytes_into_lines_or_a_client_error_with_a_message(body: bytes, content_type: str) -> None:
    try:
        lines = parse_body(body, content_type, max_line_size=MAX_LINE_SIZE, max_lines=10000)
    except ApiError as exc:
        assert 400 <= exc.status < 500
        assert exc.code and exc.message
        return
    assert lines
    for line in lines:
        assert line.level in LEVELS
        assert math.isfinite(line.ts) and line.ts >= 0
        line.message.encode("utf-8")  # storable: no lone surrogate got through


def parsed(parse: Callable[[], NewLines]) -> tuple[Any, ...]:
    """A parser's outcome, to compare: the rows it made (the stored text of fields included) and each line's
    fields, or its error's status, code and message."""
    try:
        lines = parse()
    except ApiError as exc:
        return (exc.status, exc.code, exc.message)
    return (lines.rows, lines.fields)


@settings(max_examples=5 * HTTP_EXAMPLES, deadline=None, database=None)
@given(
    objects=st.lists(line_objects() | JSON_VALUE, min_size=1, max_size=8),
    form=st.sampled_from(["json", "ndjson"]),
    ending=st.sampled_from(["\n", "\r\n", "\n\n"]),
    ascii_only=st.booleans(),
)
def test_the_compiled_and_the_python_parser_make_the_same_lines_byte_for_byte(
    objects: list[Any], form: str, ending: str, ascii_only: bool
) -> None:
    if form == "ndjson":
        body = ending.join(json.dumps(o, ensure_ascii=ascii_only) for o in objects).encode("utf-8", "surrogatepass")
    else:
        body = json.dumps(objects, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    now = 1_765_000_000.5
    if decode_body(body, form, now, MAX_LINE_SIZE, 10_000) is not None:
        counted["compiled"] = counted.get("compiled", 0) + 1
    content_type = "application/x-ndjson" if form == "ndjson" else "application/json"
    assert parsed(lambda: parse_body(body, content_type, max_line_size=MAX_LINE_SIZE, max_lines=10_000, now=now)) == (
        parsed(lambda: parse_body_in_python(body, form, max_line_size=MAX_LINE_SIZE, max_lines=10_000, now=now))
    )


@settings(max_examples=200, deadline=None, database=None)
@given(messages=st.lists(TEXT.filter(lambda m: "\n" not in m and not m.endswith("\r")), min_size=1, max_size=20))
def test_parser_reads_text_lines_exactly_as_written(messages: list[str]) -> None:
    assume(not messages[0].startswith("\ufeff"))  # a leading U+FEFF is the body's byte-order mark
    body = ("\n".join(messages) + "\n").encode()
    lines = parse_body(body, "text/plain", max_line_size=10**7, max_lines=10000)
    assert [line.message for line in lines] == messages


# ---- over HTTP, against a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server child whose line limit is the default 256 KiB."""
    proc = ServerProcess.in_folder(tmp_path_factory.mktemp("ingest")).start()
    try:
        yield proc
    finally:
        record_figures("properties", {"http_examples": HTTP_EXAMPLES, **counted})
        if proc.process.poll() is None:
            assert proc.terminate() == 0
            assert "Traceback" not in proc.stderr, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def http(ingest_server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of that server, as one user."""
    headers = {"Authorization": f"Bearer {make_token('prop')}"}
    with httpx.Client(base_url=ingest_server.url, headers=headers, timeout=30) as client:
        yield client


def history(http: httpx.Client, agent: str) -> list[dict[str, Any]]:
    """Every stored line of an agent."""
    answer = http.get(f"/api/agents/{agent}/logs", params={"limit": 10000})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["lines"])


HTTP_SETTINGS = settings(
    max_examples=HTTP_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HTTP_SETTINGS
@given(body=st.binary(max_size=2000) | TEXT.map(str.encode), content_type=st.sampled_from(CONTENT_TYPES))
def test_any_bytes_posted_are_refused_with_a_message_or_read_back_as_sent(
    http: httpx.Client, body: bytes, content_type: str
) -> None:
    agent = f"p-{uuid.uuid4().hex[:12]}"
    headers = {"Content-Type": content_type} if content_type else {}
    answer = http.post(f"/api/agents/{agent}/logs", content=body, headers=headers)
    assert answer.status_code < 500, answer.text
    if answer.status_code != 200:
        counted["refused"] += 1
        assert 400 <= answer.status_code < 500
        error = answer.json()["error"]
        assert error["code"] and error["message"]
        assert http.get(f"/api/agents/{agent}").status_code == 404, "a refused batch must leave nothing behind"
        return
    counted["accepted"] += 1
    stored = history(http, agent)
    counted["lines"] += len(stored)
    assert answer.json() == {"accepted": len(stored), "first_seq": 1, "last_seq": len(stored)}
    assert [line["seq"] for line in stored] == list(range(1, len(stored) + 1))
    sniffed = content_type.split(";")[0] in ("", "application/octet-stream", "application/x-www-form-urlencoded")
    if content_type.startswith("text/plain") or (sniffed and body.lstrip()[:1] not in (b"{", b"[")):
        assert [line["message"] for line in stored] == text_lines(body)
    else:
        # JSON that parsed: what is stored and read back is what the parser made of it, field for field.
        parsed = parse_body(body, content_type, max_line_size=MAX_LINE_SIZE, max_lines=10000)
        assert [(line["message"], line["level"], line["source"], line["fields"]) for line in stored] == [
            (line.message, line.level, line.source, line.fields) for line in parsed
        ]


@settings(HTTP_SETTINGS, max_examples=max(1, HTTP_EXAMPLES // 2))  # its examples are the costliest to generate
@given(objects=st.lists(line_objects(), min_size=1, max_size=8), form=st.sampled_from(["json", "ndjson"]))
def test_json_and_ndjson_lines_read_back_exactly_over_http(
    http: httpx.Client, objects: list[dict[str, Any]], form: str
) -> None:
    agent = f"j-{uuid.uuid4().hex[:12]}"
    if form == "ndjson":
        body = "\n".join(json.dumps(o, ensure_ascii=False) for o in objects).encode()
        content_type = "application/x-ndjson"
    else:
        body, content_type = json.dumps(objects, ensure_ascii=False).encode(), "application/json"
    answer = http.post(f"/api/agents/{agent}/logs", content=body, headers={"Content-Type": content_type})
    if any(size_of(o) > MAX_LINE_SIZE for o in objects):
        counted["refused"] += 1
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_line"
        assert "above the limit" in answer.json()["error"]["message"]
        return
    assert answer.status_code == 200, answer.text
    counted["accepted"] += 1
    stored = history(http, agent)
    counted["lines"] += len(stored)
    assert [line["message"] for line in stored] == [o.get("message", o.get("msg")) for o in objects]
    assert [line["level"] for line in stored] == [expected_level(o) for o in objects]
    assert [line["source"] for line in stored] == [o.get("source", o.get("log_source", "")) for o in objects]
    assert [line["fields"] for line in stored] == [expected_fields(o) for o in objects]


@HTTP_SETTINGS
@given(messages=st.lists(TEXT.filter(lambda m: "\n" not in m and not m.endswith("\r")) | LONG, min_size=1, max_size=6))
def test_text_lines_read_back_exactly_over_http_and_in_the_download(http: httpx.Client, messages: list[str]) -> None:
    assume(not messages[0].startswith("\ufeff"))
    messages = [m.replace("\n", " ").rstrip("\r") for m in messages]
    agent = f"t-{uuid.uuid4().hex[:12]}"
    body = ("\r\n".join(messages) + "\r\n").encode()
    answer = http.post(f"/api/agents/{agent}/logs", content=body, headers={"Content-Type": "text/plain"})
    if any(len(m.encode()) > MAX_LINE_SIZE for m in messages):
        counted["refused"] += 1
        assert answer.status_code == 400 and "above the limit" in answer.json()["error"]["message"]
        return
    assert answer.status_code == 200, answer.text
    counted["accepted"] += 1
    counted["lines"] += len(messages)
    assert [line["message"] for line in history(http, agent)] == messages
    download = http.get(f"/api/agents/{agent}/logs", params={"format": "ndjson"})
    assert [json.loads(row)["message"] for row in download.text.split("\n")[:-1]] == messages
