"""Answer heads: the Date header and the status line and headers of an answer, each rendered once and reused.

A one-line POST is answered in tens of microseconds, and building HTTPHeaders, formatting the date and writing the
head out line by line cost a tenth of that (bench/run.py's ingest scenario, profiled). The Date value changes once a
second, and the head of an answer changes only with its status and headers: both are rendered once and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from http.client import responses

from tornado import httputil

Fields = tuple[tuple[str, str], ...]

_date: tuple[int, str] = (0, "")
# Headers the connection writes itself: a head rendered ahead cannot carry them.
_FRAMING = frozenset({"date", "content-length", "transfer-encoding", "connection"})


def date_header(now: float) -> str:
    """The Date header for `now`, formatted once a second."""
    global _date
    second = int(now)
    if _date[0] != second:
        _date = (second, httputil.format_timestamp(second))
    return _date[1]


def status_line(status: int) -> httputil.ResponseStartLine:
    """The status line of an answer with `status`."""
    return httputil.ResponseStartLine("HTTP/1.1", status, responses.get(status, "Unknown"))


def answer_headers(fields: Sequence[tuple[str, str]], now: float) -> httputil.HTTPHeaders:
    """Date then `fields` as HTTPHeaders (a later value of a name replaces an earlier one, Set-Cookie adds up)."""
    headers = httputil.HTTPHeaders()
    headers["Date"] = date_header(now)
    for name, value in fields:
        if name == "Set-Cookie":
            headers.add(name, value)
        else:
            headers[name] = value
    return headers


def whole_answer_head(status: int, fields: Fields, now: float, length: int) -> bytes | None:
    """The head of a whole answer with a body of `length` bytes, as Exchange.write_whole takes it (Date, then
    `fields`, then Content-Length); None when the connection must render it (see rendered_head)."""
    head = rendered_head(status, fields)
    if head is None:
        return None
    before_date, after_date = head
    return b"%b%b%b%d\r\n" % (before_date, date_header(now).encode(), after_date, length)


@functools.lru_cache(maxsize=64)
def rendered_head(status: int, fields: Fields) -> tuple[bytes, bytes] | None:
    """The head answer_headers gives, in two parts: up to the Date value, and from after it to "Content-Length: ".
    None for a status without a body, a header the connection sets itself, or a value it would refuse."""
    if status in (204, 304) or 100 <= status < 200:
        return None
    if any(name.lower() in _FRAMING for name, _ in fields):
        return None
    headers = answer_headers(fields, 0)
    start = status_line(status)
    lines = [f"HTTP/1.1 {start.code} {start.reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers.get_all() if name != "Date")
    if any("\r" in line or "\n" in line for line in lines):
        return None
    try:
        return f"{lines[0]}\r\nDate: ".encode("latin1"), "".join(f"\r\n{line}" for line in lines[1:]).encode(
            "latin1"
        ) + b"\r\nContent-Length: "
    except UnicodeEncodeError:
        return None
