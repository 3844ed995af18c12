"""Sentra's own HTTP/1.1 server (sentra/http/) seen from a client writing raw bytes on a loopback socket.

Keep-alive and pipelining, chunked bodies split anywhere, framing errors answered in words, Expect: 100-continue,
HTTP/1.0, Connection: close, HEAD, the header and body timeouts, an event stream on a kept-alive connection, and
clients that leave half way. (A body over limits.max_body_size announced by Content-Length or sent chunked within
the discard allowance is in tests/test_limits.py; the 413 for a Content-Length of thousands of digits and slow
trickled headers and bodies against a server process are in tests/reliability/test_hostile_clients.py.)
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import RunningServer, ServerFactory
from tornado.httputil import HTTPHeaders, HTTPInputError

from sentra.http.parsing import parse_headers

NDJSON = "application/x-ndjson"


@dataclass
class Answer:
    """One response as read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class Raw:
    """One TCP connection to the server: bytes go out exactly as given, answers are read as HTTP/1.1 frames them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        """Write `data` now."""
        self.writer.write(data)
        await self.writer.drain()

    async def send_in_pieces(self, data: bytes, cuts: list[int], pause: float = 0.05) -> None:
        """Write `data` cut at the offsets `cuts`, pausing between pieces so each arrives in its own read."""
        start = 0
        for cut in [*cuts, len(data)]:
            await self.send(data[start:cut])
            start = cut
            await asyncio.sleep(pause)

    async def head(self, timeout: float = 10) -> tuple[int, dict[str, str]]:
        """The next status line and headers."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = raw.decode("latin1").split("\r\n")[:-2]
        assert status_line.startswith("HTTP/1.1 "), raw[:200]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split(" ", 2)[1]), headers

    async def chunk(self, timeout: float = 10) -> bytes:
        """The next chunk of a chunked body (b"" for the last one)."""
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
        size = int(size_line[:-2], 16)
        data = await asyncio.wait_for(self.reader.readexactly(size + 2), timeout)
        assert data[-2:] == b"\r\n", data[-20:]
        return data[:-2]

    async def answer(self, *, head_request: bool = False, timeout: float = 10) -> Answer:
        """The next whole response, its body framed by Transfer-Encoding, Content-Length or the close."""
        status, headers = await self.head(timeout)
        if head_request or status in (204, 304) or 100 <= status < 200:
            return Answer(status, headers, b"")
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while piece := await self.chunk(timeout):
                body += piece
            return Answer(status, headers, body)
        if "content-length" in headers:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), timeout)
            return Answer(status, headers, body)
        return Answer(status, headers, await asyncio.wait_for(self.reader.read(), timeout))

    async def closed(self, within: float = 5) -> bool:
        """True if the server closes the connection (EOF or reset) within `within` seconds, sending nothing more."""
        try:
            rest = await asyncio.wait_for(self.reader.read(65536), within)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        assert rest == b"", rest[:200]
        return True

    def close(self) -> None:
        """Drop the connection."""
        self.writer.close()


Connect = Callable[[int], Awaitable[Raw]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens raw connections to 127.0.0.1 and closes every one of them after the test."""
    opened: list[Raw] = []

    async def open_connection(port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(Raw(reader, writer))
        return opened[-1]

    yield open_connection
    for conn in opened:
        conn.close()
        try:
            await conn.writer.wait_closed()
        except ConnectionError:
            pass


def request(
    method: str,
    target: str,
    server: RunningServer | None = None,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """A request as bytes; a body gets a Content-Length unless the headers frame it otherwise."""
    fields = {"Host": "127.0.0.1"}
    if server is not None:
        fields["Authorization"] = f"Bearer {server.token('alice')}"
    fields.update(headers or {})
    if body is not None and "Transfer-Encoding" not in fields and "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    head = f"{method} {target} {version}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return head.encode("latin1") + b"\r\n" + (body or b"")


def post(server: RunningServer, agent: str, body: bytes, **headers: str) -> bytes:
    """A POST of NDJSON lines to `agent` as alice (header names with underscores for dashes)."""
    fields = {"Content-Type": NDJSON, **{name.replace("_", "-"): value for name, value in headers.items()}}
    return request("POST", f"/api/agents/{agent}/logs", server, body=body, headers=fields)


def ndjson(*messages: str) -> bytes:
    """NDJSON lines with these messages."""
    return b"".join(json.dumps({"message": message}).encode() + b"\n" for message in messages)


def chunked(*pieces: bytes) -> bytes:
    """A chunked body of these chunks and the last chunk."""
    return b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


async def stored(server: RunningServer, agent: str) -> list[str] | None:
    """The messages the agent holds, in order (None if the agent does not exist)."""
    async with server.client("alice") as alice:
        response = await alice.get(f"/api/agents/{agent}/logs")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return [line["message"] for line in response.json()["lines"]]


async def still_serving(server: RunningServer) -> None:
    """Another client is answered at once."""
    async with server.client("alice") as alice:
        assert (await alice.get("/healthz")).status_code == 200


async def refused_in_words(conn: Raw, status: int, *words: str) -> None:
    """The answer is `status` with a body naming what was wrong, and the server then closes the connection."""
    answer = await conn.answer()
    text = answer.body.decode()
    assert answer.status == status, (answer.status, text)
    assert all(word in text for word in words), text
    assert answer.headers.get("connection") == "close"
    assert await conn.closed()


# ---- keep-alive and pipelining -------------------------------------------------------------------------------


async def test_several_requests_on_one_connection_are_answered_in_order(
    server: RunningServer, connect: Connect
) -> None:
    conn = await connect(server.port)
    for number in range(1, 6):
        await conn.send(post(server, "kept", ndjson(f"line {number}")))
        answer = await conn.answer()
        assert (answer.status, answer.json()) == (200, {"accepted": 1, "first_seq": number, "last_seq": number})
        assert "connection" not in answer.headers
        await conn.send(request("GET", "/api/agents/kept/logs", server))
        history = await conn.answer()
        assert [line["message"] for line in history.json()["lines"]] == [f"line {n}" for n in range(1, number + 1)]
    conn.close()


async def test_pipelined_requests_in_one_send_are_answered_in_order_and_stored_once(
    server: RunningServer, connect: Connect
) -> None:
    conn = await connect(server.port)
    await conn.send(
        post(server, "piped", ndjson("one", "two"))
        + request("GET", "/api/agents/piped/logs", server)
        + post(server, "piped", chunked(ndjson("three")), Transfer_Encoding="chunked")
        + request("GET", "/healthz")
    )
    first, history, third, health = [await conn.answer() for _ in range(4)]
    assert first.json() == {"accepted": 2, "first_seq": 1, "last_seq": 2}
    assert [line["message"] for line in history.json()["lines"]] == ["one", "two"]
    assert third.json() == {"accepted": 1, "first_seq": 3, "last_seq": 3}
    assert health.status == 200 and health.json()["status"] == "ok"
    conn.close()
    assert await stored(server, "piped") == ["one", "two", "three"]


async def test_pipelined_refused_and_accepted_posts_are_answered_in_order(
    server: RunningServer, connect: Connect
) -> None:
    conn = await connect(server.port)
    await conn.send(
        post(server, "mixed", b"{not json\n")
        + post(server, "mixed", ndjson("first"))
        + post(server, "mixed", b"", Idempotency_Key="")
        + post(server, "mixed", ndjson("second"))
    )
    answers = [await conn.answer() for _ in range(4)]
    assert [answer.status for answer in answers] == [400, 200, 400, 200]
    assert answers[0].json()["error"]["code"] == "invalid_json"
    assert answers[2].json()["error"]["code"] == "empty_batch"
    assert [answers[1].json(), answers[3].json()] == [
        {"accepted": 1, "first_seq": 1, "last_seq": 1},
        {"accepted": 1, "first_seq": 2, "last_seq": 2},
    ]
    conn.close()
    assert await stored(server, "mixed") == ["first", "second"]


async def test_requests_pipelined_after_connection_close_are_not_run(server: RunningServer, connect: Connect) -> None:
    conn = await connect(server.port)
    await conn.send(
        post(server, "last", ndjson("kept"), Connection="close") + post(server, "last", ndjson("never read"))
    )
    answer = await conn.answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await conn.closed()
    assert await stored(server, "last") == ["kept"]


# ---- chunked request bodies ----------------------------------------------------------------------------------


async def test_chunked_ndjson_in_several_chunks_is_stored_exactly(server: RunningServer, connect: Connect) -> None:
    body = ndjson("alpha", "beta", "gamma é", "delta")
    # Chunk boundaries fall inside lines and inside a multi-byte character.
    pieces = [body[:7], body[7:30], body[30:45], body[45:46], body[46:]]
    conn = await connect(server.port)
    await conn.send(post(server, "chunks", chunked(*pieces), Transfer_Encoding="chunked"))
    answer = await conn.answer()
    assert answer.json() == {"accepted": 4, "first_seq": 1, "last_seq": 4}
    conn.close()
    assert await stored(server, "chunks") == ["alpha", "beta", "gamma é", "delta"]


async def test_chunked_body_split_across_sends_at_awkward_boundaries_is_stored_exactly(
    server: RunningServer, connect: Connect
) -> None:
    lines = ndjson(*(f"line {number:02}" for number in range(20)))
    big = lines[:300]  # a chunk size of more than one hex digit: "12c"
    body = chunked(big, lines[300:])
    head = post(server, "split", b"", Transfer_Encoding="chunked")
    data = head + body
    at = len(head)
    cuts = [
        at - 1,  # between the CR and LF that end the headers
        at + 1,  # inside the chunk-size line "12c"
        at + 2,
        at + 4,  # between the CR and LF after the chunk size
        at + 5 + 150,  # inside the chunk's data
        at + 5 + 300 + 1,  # between the CR and LF after the data
        len(data) - 4,  # inside the last chunk "0\r\n\r\n"
        len(data) - 2,
        len(data) - 1,
    ]
    conn = await connect(server.port)
    await conn.send_in_pieces(data, cuts)
    answer = await conn.answer()
    assert answer.json() == {"accepted": 20, "first_seq": 1, "last_seq": 20}
    # Byte by byte, on the same kept-alive connection.
    one_by_one = post(server, "split", chunked(ndjson("slow", "ly"), ndjson("there")), Transfer_Encoding="chunked")
    await conn.send_in_pieces(one_by_one, list(range(1, len(one_by_one))), pause=0.001)
    assert (await conn.answer()).json() == {"accepted": 3, "first_seq": 21, "last_seq": 23}
    conn.close()
    assert await stored(server, "split") == [f"line {number:02}" for number in range(20)] + ["slow", "ly", "there"]


async def test_bad_chunk_size_is_400_in_words_closes_and_stores_nothing(
    server: RunningServer, connect: Connect
) -> None:
    for bad in (b"zz\r\n", b"5;name=value\r\n", b"-5\r\n", b"1" * 70):
        conn = await connect(server.port)
        # A complete first chunk of whole lines arrives before the bad size.
        await conn.send(post(server, "badsize", b"", Transfer_Encoding="chunked"))
        await conn.send(b"%x\r\n%b\r\n" % (len(ndjson("early")), ndjson("early")) + bad)
        await refused_in_words(conn, 400, "invalid chunk size")
    assert await stored(server, "badsize") is None
    await still_serving(server)


async def test_chunk_without_its_crlf_is_400_in_words_closes_and_stores_nothing(
    server: RunningServer, connect: Connect
) -> None:
    line = ndjson("early")
    for body in (b"%x\r\n%bXY" % (len(line), line), b"%x\r\n%b\r\n0\r\nXY" % (len(line), line)):
        conn = await connect(server.port)
        await conn.send(post(server, "badend", body, Transfer_Encoding="chunked"))
        await refused_in_words(conn, 400, "improperly terminated")
    assert await stored(server, "badend") is None


# ---- framing errors ------------------------------------------------------------------------------------------


async def test_content_length_with_transfer_encoding_is_400_and_stores_nothing(
    server: RunningServer, connect: Connect
) -> None:
    body = chunked(ndjson("smuggled"))
    conn = await connect(server.port)
    await conn.send(post(server, "both", body, Transfer_Encoding="chunked", Content_Length=str(len(body))))
    await refused_in_words(conn, 400, "Transfer-Encoding", "Content-Length")
    assert await stored(server, "both") is None


async def test_unequal_content_lengths_are_400_and_equal_ones_are_read(server: RunningServer, connect: Connect) -> None:
    line = ndjson("once")
    # A list is split at commas and the spaces or tabs after them only: a no-break space (obs-text) is no space.
    for lengths in (
        [str(len(line)), str(len(line) + 1)],
        [f"{len(line)}, {len(line) - 1}"],
        [f"{len(line)},\xa0{len(line)}"],
    ):
        conn = await connect(server.port)
        head = request("POST", "/api/agents/lengths/logs", server, headers={"Content-Type": NDJSON})[:-2]
        fields = "".join(f"Content-Length: {length}\r\n" for length in lengths)
        await conn.send(head + fields.encode("latin1") + b"\r\n" + line + b"\n")
        await refused_in_words(conn, 400, "unequal Content-Lengths")
    assert await stored(server, "lengths") is None
    conn = await connect(server.port)
    await conn.send(post(server, "lengths", line, Content_Length=f"{len(line)}, {len(line)}"))
    assert (await conn.answer()).json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    conn.close()


async def test_headers_above_64_kib_are_431_in_words_and_closed(server: RunningServer, connect: Connect) -> None:
    # Unfinished headers past the limit, and finished headers whose end lies past it.
    for tail in (b"", b"\r\n\r\n"):
        conn = await connect(server.port)
        await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 66_000 + tail)
        await refused_in_words(conn, 431, "headers", "65536 bytes")
    conn = await connect(server.port)
    await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n")
    assert (await conn.answer()).status == 200
    conn.close()


async def test_malformed_request_line_is_400_in_words(server: RunningServer, connect: Connect) -> None:
    for line, words in (
        (b"GARBAGE\r\n\r\n", "Malformed HTTP request line"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", "HTTP version"),
        (b"GET /healthz\r\nHost: x\r\n\r\n", "Malformed HTTP request line"),
        (b"GET /healthz HTTP/1.2\r\n\r\n", "Unsupported HTTP version HTTP/1.2"),
        (b"GET /caf\xe9 HTTP/1.1\r\n\r\n", "Invalid request target"),
        (b"GET healthz HTTP/1.1\r\n\r\n", "Invalid request target"),
        (b"GET /healthz HTTP/1.1\r\r\n\r\n", "Malformed HTTP request line"),
        (b"GET /healthz HTTP/1.1\nHost: x\r\n\r\n", "end it with CRLF"),
        (b"\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", "more than one empty line"),
    ):
        conn = await connect(server.port)
        await conn.send(line)
        await refused_in_words(conn, 400, words)
    await still_serving(server)


async def test_malformed_header_lines_are_400_in_words(server: RunningServer, connect: Connect) -> None:
    for lines, words in (
        (b"X-Long: one\r\n  folded on\r\n", "folding not supported"),
        (b"\tX-Indented: 1\r\n", "folding not supported"),
        (b"NoColonHere\r\n", "no colon"),
        (b"Bad Name: 1\r\n", "Invalid header name"),
        (b"X-Control: a\x01b\r\n", "Invalid header value"),
        (b"X-Cr: a\rb\r\n", "Invalid header value"),
    ):
        conn = await connect(server.port)
        await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        await refused_in_words(conn, 400, words)
    await still_serving(server)


async def test_headers_in_any_case_spacing_and_line_ending_are_read(server: RunningServer, connect: Connect) -> None:
    conn = await connect(server.port)
    body = ndjson("spaced")
    # Header lines may end in a bare LF (RFC 9112 2.2); the request line may not (see test_http1_differential.py).
    head = (
        f"POST /api/agents/spaced/logs HTTP/1.1\r\nhost:x\r\nauthorization:\t Bearer {server.token('alice')} \t\n"
        f"CONTENT-type:   {NDJSON}   \r\ncontent-length:{len(body)}\nX-Empty:\r\nX-Latin: caf\xe9\n\n"
    )
    await conn.send(head.encode("latin1") + body)
    answer = await conn.answer()
    assert answer.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    # A header sent twice counts as one list: two unequal lengths are refused as before.
    await conn.send(post(server, "spaced", body)[: -len(body) - 2] + b"Content-Length: 99\r\n\r\n" + body)
    await refused_in_words(conn, 400, "Multiple unequal Content-Lengths")
    assert await stored(server, "spaced") == ["spaced"]


def test_header_blocks_are_read_as_tornados_parser_reads_them() -> None:
    blocks = [
        "\n\r\n",
        "\n\n",
        "\nHost: x\r\n\r\n",
        "\nhost: x\nHOST: y\r\nX-A:\r\nx-a:  b  c \t\r\n\r\n",
        "\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        "\nX-A: caf\xe9\r\n\r\n",
        "\nX-A: \xa0b\xa0\r\n\r\n",
        "\nX-A 1\r\n\r\n",
        "\nX A: 1\r\n\r\n",
        "\nX-A : 1\r\n\r\n",
        "\n: 1\r\n\r\n",
        "\nX-A: a\x00b\r\n\r\n",
        "\nX-A: a\x7fb\r\n\r\n",
        "\nX-A: a\rb\r\n\r\n",
        "\nX-A: 1\r\r\n\r\n",
        "\nX-A: a:b::c\r\n\r\n",
        "\nX-A: 1\r\n\r\nX-B: 2\r\n\r\n",
        "\nX-A: 1",
    ]
    for block in blocks:
        assert _read(parse_headers, block) == _read(HTTPHeaders.parse, block), repr(block)
    # Folded lines are refused whatever the Tornado release (before 6.6 its parser unfolds them).
    for block in ("\nX-A: 1\r\n folded\r\n\r\n", "\n X-A: 1\r\n\r\n", "\nX-A: 1\r\n\tfolded\r\n\r\n"):
        assert _read(parse_headers, block) == "header line cannot start with whitespace, folding not supported"


def _read(parse: Callable[[str], HTTPHeaders], block: str) -> Any:
    """What a handler sees of a header block: every field, each header as one value and as a list; or the error."""
    try:
        headers = parse(block)
    except HTTPInputError as exc:
        return str(exc)
    return list(headers.get_all()), {name: (headers[name], headers.get_list(name)) for name in headers}


async def test_ingest_answers_carry_exactly_these_headers_in_this_order(
    start_server: ServerFactory, connect: Connect
) -> None:
    server = await start_server(**{"server.cors_origins": ["https://viewer.example"]})
    body = ndjson("head")
    common = [  # no Server header: Sentra does not name itself or its version to whoever asks
        "Date: *",
        "X-Content-Type-Options: nosniff",
        "Referrer-Policy: no-referrer",
        "Vary: Origin",  # on every answer of a server with CORS origins: the answer depends on the Origin
    ]
    cors = [
        "Access-Control-Allow-Origin: https://viewer.example",
        "Access-Control-Allow-Credentials: true",
        "Access-Control-Expose-Headers: Location, Retry-After, Idempotent-Replayed, WWW-Authenticate",
    ]
    json_type = "Content-Type: application/json; charset=utf-8"
    unauthorized = post(server, "heads", body).replace(f"Bearer {server.token('alice')}".encode(), b"Bearer x")
    http_1_0 = request(
        "POST",
        "/api/agents/heads/logs",
        server,
        body=body,
        headers={"Content-Type": NDJSON, "Connection": "keep-alive"},
    ).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    for message, status_line, fields in (
        (post(server, "heads", body), "HTTP/1.1 200 OK", [*common, json_type, "Content-Length: 46"]),
        (
            post(server, "heads", body, Origin="https://viewer.example"),
            "HTTP/1.1 200 OK",
            [*common, *cors, json_type, "Content-Length: 46"],
        ),
        (
            post(server, "heads", body, Origin="https://evil.example"),
            "HTTP/1.1 200 OK",
            [*common, json_type, "Content-Length: 46"],
        ),
        (
            post(server, "heads", body, Idempotency_Key="k1"),
            "HTTP/1.1 200 OK",
            [*common, json_type, "Content-Length: 46"],
        ),
        (
            post(server, "heads", body, Idempotency_Key="k1"),
            "HTTP/1.1 200 OK",
            [*common, json_type, "Idempotent-Replayed: true", "Content-Length: 46"],
        ),
        (post(server, "heads", b""), "HTTP/1.1 400 Bad Request", [*common, json_type, "Content-Length: 73"]),
        (
            unauthorized,
            "HTTP/1.1 401 Unauthorized",
            [
                *common,
                json_type,
                'Www-Authenticate: Bearer realm="sentra", error="invalid_token"',
                "Content-Length: 94",
                "Connection: close",  # answered before its body was read
            ],
        ),
        (http_1_0, "HTTP/1.1 200 OK", [*common, json_type, "Content-Length: 46", "Connection: Keep-Alive"]),
        (
            post(server, "heads", body, Connection="close"),
            "HTTP/1.1 200 OK",
            [*common, json_type, "Content-Length: 46", "Connection: close"],
        ),
    ):
        conn = await connect(server.port)
        await conn.send(message)
        head = (await conn.reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")[:-2]
        date = next(line for line in head if line.startswith("Date: "))
        assert re.fullmatch(r"Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", date), date
        assert head == [status_line, *[date if field == "Date: *" else field for field in fields]], message[:60]


# ---- Expect, HTTP/1.0, Connection: close, HEAD ---------------------------------------------------------------


async def test_expect_100_continue_gets_the_interim_answer_before_the_body_is_sent(
    server: RunningServer, connect: Connect
) -> None:
    body = ndjson("after continue")
    conn = await connect(server.port)
    message = post(server, "expect", body, Expect="100-continue")
    await conn.send(message[: -len(body)])
    interim = await conn.answer(timeout=5)
    assert interim.status == 100
    await conn.send(body)
    answer = await conn.answer()
    assert answer.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    conn.close()
    assert await stored(server, "expect") == ["after continue"]


async def test_http_1_0_without_keep_alive_gets_its_answer_then_the_close(
    server: RunningServer, connect: Connect
) -> None:
    conn = await connect(server.port)
    await conn.send(request("GET", "/healthz", version="HTTP/1.0"))
    answer = await conn.answer()
    assert answer.status == 200 and answer.json()["status"] == "ok"
    assert "transfer-encoding" not in answer.headers
    assert await conn.closed()


async def test_http_1_0_with_keep_alive_stays_open(server: RunningServer, connect: Connect) -> None:
    conn = await connect(server.port)
    for number in (1, 2):
        await conn.send(
            request(
                "POST",
                "/api/agents/old/logs",
                server,
                body=ndjson(f"old {number}"),
                headers={"Content-Type": NDJSON, "Connection": "keep-alive"},
                version="HTTP/1.0",
            )
        )
        answer = await conn.answer()
        assert answer.json() == {"accepted": 1, "first_seq": number, "last_seq": number}
        assert answer.headers["connection"] == "Keep-Alive" and "content-length" in answer.headers
    await conn.send(request("GET", "/healthz", headers={"Connection": "keep-alive"}, version="HTTP/1.0"))
    assert (await conn.answer()).status == 200
    assert not await conn.closed(within=0.3)
    conn.close()
    assert await stored(server, "old") == ["old 1", "old 2"]


async def test_connection_close_is_echoed_and_the_socket_closes(server: RunningServer, connect: Connect) -> None:
    conn = await connect(server.port)
    await conn.send(request("GET", "/healthz", headers={"Connection": "close"}))
    answer = await conn.answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await conn.closed()


async def test_close_among_the_connection_options_closes_after_the_answer(
    server: RunningServer, connect: Connect
) -> None:
    conn = await connect(server.port)
    await conn.send(
        request("GET", "/healthz", headers={"Connection": "keep-alive, close"})
        + post(server, "after-close", ndjson("never read"))
    )
    answer = await conn.answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await conn.closed()
    assert await stored(server, "after-close") is None


async def test_http_1_0_chunked_request_is_stored_then_the_connection_closes(
    server: RunningServer, connect: Connect
) -> None:
    # RFC 9112 6.1: an HTTP/1.0 hop may have kept part of a message with Transfer-Encoding; nothing after it is read.
    conn = await connect(server.port)
    chunked_post = request(
        "POST",
        "/api/agents/old-chunked/logs",
        server,
        body=chunked(ndjson("chunked in 1.0")),
        headers={"Content-Type": NDJSON, "Transfer-Encoding": "chunked", "Connection": "keep-alive"},
        version="HTTP/1.0",
    )
    await conn.send(chunked_post + post(server, "old-chunked", ndjson("never read")))
    answer = await conn.answer()
    assert answer.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    assert "connection" not in answer.headers
    assert await conn.closed()
    assert await stored(server, "old-chunked") == ["chunked in 1.0"]


async def test_head_gets_headers_and_no_body_and_the_connection_goes_on(
    server: RunningServer, connect: Connect
) -> None:
    conn = await connect(server.port)
    await conn.send(request("HEAD", "/") + request("HEAD", "/healthz") + request("GET", "/healthz"))
    viewer = await conn.answer(head_request=True)
    assert viewer.status == 200 and int(viewer.headers["content-length"]) > 0
    assert viewer.headers["content-type"].startswith("text/html")
    # /healthz answers HEAD as GET, without the body: only the length it would have had.
    headed = await conn.answer(head_request=True)
    assert headed.status == 200 and int(headed.headers["content-length"]) > 0
    # Had any body bytes followed the HEAD answers, this status line would not parse.
    health = await conn.answer()
    assert health.status == 200 and health.json()["status"] == "ok"
    conn.close()


# ---- timeouts ------------------------------------------------------------------------------------------------


async def test_half_sent_headers_are_cut_after_the_header_timeout(
    start_server: ServerFactory, connect: Connect
) -> None:
    server = await start_server(**{"server.header_timeout": "0.5s"})
    conn = await connect(server.port)
    started = time.monotonic()
    await conn.send(b"POST /api/agents/slow/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
    assert await conn.closed(within=5)
    assert time.monotonic() - started >= 0.45
    # A kept-alive connection left idle between requests is cut the same way.
    idle = await connect(server.port)
    await idle.send(request("GET", "/healthz"))
    assert (await idle.answer()).status == 200
    started = time.monotonic()
    assert await idle.closed(within=5)
    assert time.monotonic() - started >= 0.45
    # Each request starts the wait over: a connection in use for longer than the timeout is not cut.
    busy = await connect(server.port)
    for _ in range(4):
        await asyncio.sleep(0.3)
        await busy.send(request("GET", "/healthz"))
        assert (await busy.answer()).status == 200
    started = time.monotonic()
    assert await busy.closed(within=5)
    assert time.monotonic() - started >= 0.45
    await still_serving(server)


async def test_stalled_body_is_cut_after_the_body_timeout_and_nothing_is_stored(
    start_server: ServerFactory, connect: Connect
) -> None:
    server = await start_server(**{"server.body_timeout": "0.5s"})
    whole = ndjson("complete line", "another")
    for message in (
        post(server, "stall", whole + ndjson("never finished"))[:-10],
        post(server, "stall", b"", Transfer_Encoding="chunked") + b"%x\r\n%b\r\n" % (len(whole), whole),
    ):
        conn = await connect(server.port)
        started = time.monotonic()
        await conn.send(message)
        assert await conn.closed(within=5)
        assert time.monotonic() - started >= 0.45
    assert await stored(server, "stall") is None
    await still_serving(server)


# ---- event streams and clients that leave --------------------------------------------------------------------


async def test_event_stream_on_a_kept_alive_connection_after_a_post(
    start_server: ServerFactory, connect: Connect
) -> None:
    # The header timeout must not cut a stream that is being answered.
    server = await start_server(**{"server.header_timeout": "0.5s", "streams.heartbeat": "10s"})
    conn = await connect(server.port)
    await conn.send(post(server, "watched", ndjson("before")))
    assert (await conn.answer()).json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    await conn.send(request("GET", "/api/agents/watched/logs/stream", server))
    status, headers = await conn.head()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    seen = b""
    while b"before" not in seen:
        seen += await conn.chunk()
    await asyncio.sleep(1.0)
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/watched/logs", json=["after"])).status_code == 200
    seen = b""
    while b"after" not in seen:
        seen += await conn.chunk(timeout=5)
    event = next(line for line in seen.split(b"\n") if line.startswith(b"data: "))
    assert [line["message"] for line in json.loads(event[6:])["lines"]] == ["after"]
    conn.close()


async def test_client_closing_mid_body_stores_nothing_and_the_server_goes_on(
    server: RunningServer, connect: Connect
) -> None:
    whole = ndjson("complete", "lines")
    for message in (
        post(server, "gone", whole + ndjson("cut"))[:-5],
        post(server, "gone", b"", Transfer_Encoding="chunked") + b"%x\r\n%b\r\n3\r\nab" % (len(whole), whole),
    ):
        conn = await connect(server.port)
        await conn.send(message)
        await asyncio.sleep(0.1)
        conn.close()
    await asyncio.sleep(0.2)
    assert await stored(server, "gone") is None
    conn = await connect(server.port)
    await conn.send(post(server, "gone", ndjson("later")))
    assert (await conn.answer()).json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    conn.close()
    assert await stored(server, "gone") == ["later"]


async def test_chunk_size_far_above_the_body_limit_is_413_in_words(
    start_server: ServerFactory, connect: Connect
) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    conn = await connect(server.port)
    # One chunk announcing more than the limit and the allowance read to answer in JSON: refused before its data.
    await conn.send(post(server, "huge", b"", Transfer_Encoding="chunked") + b"%x\r\n" % (1 << 40))
    await refused_in_words(conn, 413, "too large")
    assert await stored(server, "huge") is None
    await still_serving(server)


async def test_body_above_the_limit_sent_whole_gets_the_413_not_a_reset(
    start_server: ServerFactory, connect: Connect
) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    body = ndjson("x" * 1000) * 20_000  # 20 MB, sent whole without waiting for an answer
    conn = await connect(server.port)
    conn.writer.write(post(server, "upload", body))
    answer = await conn.answer(timeout=20)
    assert answer.status == 413, answer
    assert answer.json()["error"]["code"] == "body_too_large" and "1024" in answer.json()["error"]["message"]
    assert answer.headers["connection"] == "close"
    await asyncio.wait_for(conn.writer.drain(), 20)
    assert await conn.closed(within=20)
    # The same for a body refused for its sender before it is read.
    anonymous = await connect(server.port)
    anonymous.writer.write(request("POST", "/api/agents/upload/logs", body=body, headers={"Content-Type": NDJSON}))
    refused = await anonymous.answer(timeout=20)
    assert refused.status == 401 and refused.headers["connection"] == "close"
    assert await stored(server, "upload") is None


async def test_client_stalling_after_an_early_answer_is_cut_after_the_body_timeout(
    start_server: ServerFactory, connect: Connect
) -> None:
    server = await start_server(**{"limits.max_body_size": 1024, "server.body_timeout": "1s"})
    conn = await connect(server.port)
    await conn.send(post(server, "stop", b"", Content_Length="100000") + b"x" * 5000)
    answer = await conn.answer()
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert await conn.closed(within=10)
    assert await stored(server, "stop") is None


async def test_closed_connections_are_freed_at_once_not_left_to_the_cycle_collector(
    server: RunningServer, connect: Connect
) -> None:
    # Memory goes back when connections close only if nothing of them waits for a garbage collection: whether the
    # client closes (FIN) or resets (RST: the transport is then closed by an error, not by close()).
    gc.collect()
    gc.disable()
    try:
        conns = [await connect(server.port) for _ in range(20)]
        for number, conn in enumerate(conns):
            await conn.send(request("GET", "/healthz", server))
            assert (await conn.answer()).status == 200
            await conn.send(post(server, "freed", ndjson(f"line {number}")))
            assert (await conn.answer()).status == 200
        for conn in conns[::2]:
            conn.writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        for conn in conns:
            conn.close()
            await conn.writer.wait_closed()
        await still_serving(server)
        await asyncio.sleep(0.2)
        servers_side = server_transports_left_to_the_collector(server.port)
    finally:
        gc.enable()
    assert servers_side == []


def server_transports_left_to_the_collector(port: int) -> list[asyncio.Transport]:
    """The transports of connections to `port` that only the cycle collector frees (with the collector disabled)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return [
            garbage
            for garbage in gc.garbage
            if isinstance(garbage, asyncio.Transport) and (garbage.get_extra_info("sockname") or ("", 0))[1] == port
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_python_3_11_transports_keep_a_cycle_only_their_private_callback_breaks() -> None:
    # Why sentra.http.protocol drops asyncio's private `_read_ready_cb` before Python 3.12: a selector transport
    # closed with everything the public API offers still refers to itself (CPython gh-100348, fixed in 3.12, where
    # it is freed at once). If this fails on 3.11, CPython fixed it there too, and _DROP_READ_CALLBACK can go.
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[None] = loop.create_future()

    class Closing(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def connection_lost(self, exc: Exception | None) -> None:
            self.transport.close()  # already closing: all the public API offers
            lost.set_result(None)

    listening = await loop.create_server(Closing, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    gc.collect()
    gc.disable()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(lost, 5)
        await asyncio.sleep(0.05)
        left = server_transports_left_to_the_collector(port)
    finally:
        gc.enable()
        listening.close()
        await listening.wait_closed()
    assert len(left) == (1 if sys.version_info < (3, 12) else 0)
