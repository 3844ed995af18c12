"""gzip on request: every answer worth compressing (history in each format, downloads, the viewer's files, the
OpenAPI document, the agents list, the event streams) is gzip when Accept-Encoding asks for it, and inflates to
exactly the bytes sent without it; Vary, Etags and 304s, q=0 refusals, HEAD, small bodies; streams deliver each event
as it is posted; an idle gzip stream holds no more than an idle stream without gzip."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from browsers import close_viewer, open_viewer
from conftest import RunningServer, create_agent, post_lines, set_status, stream_path

IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}
AGENT = "gz-run"


def line_like_an_agent(n: int) -> dict[str, Any]:
    """A line of the kind an agent sends: navigations, tool calls and model calls, with fields."""
    kind = n % 3
    if kind == 0:
        return {"message": f"Navigating to https://shop.example.com/products/{n * 37}", "fields": {"step": n}}
    if kind == 1:
        return {"message": f"Tool call click(index={n % 41}) -> ok in {n % 97}ms", "fields": {"tool": "click"}}
    return {"level": "WARNING", "message": f"LLM answered: {n * 13} input tokens, {n % 300} output tokens"}


@pytest.fixture
async def run(alice: httpx.AsyncClient) -> str:
    """An agent with 300 lines, and enough agents beside it that the agents list is worth compressing."""
    await create_agent(alice, id=AGENT, name="gzip run", labels={"team": "search"})
    for i in range(8):
        await create_agent(alice, id=f"gz-other-{i}", name=f"other run {i}", labels={"batch": str(i)})
    await post_lines(alice, AGENT, [line_like_an_agent(n) for n in range(300)])
    return AGENT


@dataclass
class Answer:
    """An answer with its body as sent on the wire (httpx would inflate it)."""

    status: int
    headers: httpx.Headers
    raw: bytes


async def fetch(client: httpx.AsyncClient, path: str, headers: dict[str, str], method: str = "GET") -> Answer:
    """`method` `path` with `headers`, its body not inflated."""
    async with client.stream(method, path, headers=headers) as response:
        raw = b"".join([part async for part in response.aiter_raw()])
    return Answer(response.status_code, response.headers, raw)


# What a user downloads or reads: history in every format (pages and whole downloads), the viewer's files, the
# OpenAPI document, the agents list.
ROUTES = [
    f"/api/agents/{AGENT}/logs",
    f"/api/agents/{AGENT}/logs?limit=200&level=info",
    f"/api/agents/{AGENT}/logs?format=ndjson&limit=300",
    f"/api/agents/{AGENT}/logs?format=text&limit=300",
    f"/api/agents/{AGENT}/logs?format=ndjson",
    f"/api/agents/{AGENT}/logs?format=text",
    f"/api/agents/{AGENT}/logs?format=text&after=100",
    "/",
    "/app.js",
    "/style.css",
    "/sentra.js",
    "/api/openapi.json",
    "/api/agents",
]
DOWNLOADS = {route for route in ROUTES if "format=" in route and "limit=" not in route}


@pytest.mark.parametrize("path", ROUTES)
async def test_gzip_answer_inflates_to_exactly_the_bytes_sent_without_it(
    alice: httpx.AsyncClient, run: str, path: str
) -> None:
    plain = await fetch(alice, path, IDENTITY)
    packed = await fetch(alice, path, GZIP)
    assert plain.status == packed.status == 200
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert len(plain.raw) >= 1024
    assert gzip.decompress(packed.raw) == plain.raw
    assert len(packed.raw) < len(plain.raw) / 2
    # Both say the answer depends on Accept-Encoding, so a cache keeps them apart.
    assert "Accept-Encoding" in plain.headers["vary"] and "Accept-Encoding" in packed.headers["vary"]
    assert packed.headers["content-type"] == plain.headers["content-type"]
    if path in DOWNLOADS:  # streamed page by page: chunked, no length, no Etag
        assert packed.headers["transfer-encoding"] == "chunked" and "content-length" not in packed.headers
    else:
        assert int(packed.headers["content-length"]) == len(packed.raw)
        assert int(plain.headers["content-length"]) == len(plain.raw)


async def test_a_download_of_many_pages_is_one_gzip_member(alice: httpx.AsyncClient) -> None:
    """A download longer than one page (10,000 lines) is written in parts; the client inflates them as one body."""
    await create_agent(alice, id="gz-long")
    for first in (0, 6_250):
        body = "".join(json.dumps({"message": f"line {n} of a long run"}) + "\n" for n in range(first, first + 6_250))
        posted = await alice.post(
            "/api/agents/gz-long/logs", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert posted.status_code == 200, posted.text
    plain = await fetch(alice, "/api/agents/gz-long/logs?format=text", IDENTITY)
    packed = await fetch(alice, "/api/agents/gz-long/logs?format=text", GZIP)
    assert plain.raw.count(b"\n") == 12_500
    assert gzip.decompress(packed.raw) == plain.raw
    # httpx, as any client, inflates it by itself
    assert (await alice.get("/api/agents/gz-long/logs?format=text")).content == plain.raw


async def test_gzip_variant_has_its_own_etag_and_either_etag_gives_a_304(alice: httpx.AsyncClient, run: str) -> None:
    for path in (f"/api/agents/{AGENT}/logs", "/app.js", "/api/openapi.json"):
        plain = await fetch(alice, path, IDENTITY)
        packed = await fetch(alice, path, GZIP)
        identity_tag, gzip_tag = plain.headers["etag"], packed.headers["etag"]
        assert gzip_tag != identity_tag and gzip_tag == identity_tag[:-1] + '-gzip"'
        for held in (identity_tag, gzip_tag, f"W/{gzip_tag}", f'"other", {gzip_tag}'):
            for asked in (IDENTITY, GZIP):
                again = await fetch(alice, path, {**asked, "If-None-Match": held})
                assert again.status == 304, (path, held, asked)
                assert again.raw == b"" and "content-encoding" not in again.headers
                assert "Accept-Encoding" in again.headers["vary"]
                # the Etag of the variant this request would get
                assert again.headers["etag"] == (gzip_tag if asked is GZIP else identity_tag)
        changed = await fetch(alice, path, {**GZIP, "If-None-Match": '"something-else-gzip"'})
        assert changed.status == 200 and gzip.decompress(changed.raw) == plain.raw


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("deflate, gzip;q=0.8", True),
        ("*", True),
        ("identity;q=0, *", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000, deflate", False),
        ("*;q=0", False),
        ("*, gzip;q=0", False),
        ("identity", False),
        ("br, deflate", False),
        ("", False),
        ("gzip;q=0.5, identity;q=1", False),
        ("gzip;q=2", False),  # not a qvalue: that member says nothing
    ],
)
async def test_accept_encoding_is_honoured_as_rfc_9110_reads_it(
    alice: httpx.AsyncClient, accept_encoding: str, gzipped: bool
) -> None:
    response = await fetch(alice, "/api/openapi.json", {"Accept-Encoding": accept_encoding})
    assert response.status == 200
    assert response.headers.get("content-encoding") == ("gzip" if gzipped else None)
    body = gzip.decompress(response.raw) if gzipped else response.raw
    assert json.loads(body)["openapi"].startswith("3.")


async def test_no_accept_encoding_gets_the_identity(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /api/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Encoding" not in head and b"Vary: Accept-Encoding" in head
    assert json.loads(body)["openapi"].startswith("3.")


@pytest.mark.parametrize(
    "path",
    [f"/api/agents/{AGENT}/logs", f"/api/agents/{AGENT}/logs?format=text", "/app.js", "/api/openapi.json", "/"],
)
async def test_head_says_what_get_says(alice: httpx.AsyncClient, run: str, path: str) -> None:
    for asked in (IDENTITY, GZIP):
        got = await fetch(alice, path, asked)
        head = await fetch(alice, path, asked, method="HEAD")
        assert head.status == 200 and head.raw == b""
        for name in ("content-encoding", "content-length", "etag", "vary", "content-type"):
            assert head.headers.get(name) == got.headers.get(name), (path, asked, name)


async def test_small_answers_are_sent_as_they_are(alice: httpx.AsyncClient, run: str) -> None:
    """Under 1 KB compression saves no packet: an agent, /healthz, a short page, a tiny viewer file."""
    for path in (f"/api/agents/{AGENT}", "/healthz", f"/api/agents/{AGENT}/logs?limit=1", "/favicon.svg"):
        response = await fetch(alice, path, GZIP)
        assert response.status == 200
        assert len(response.raw) < 1024 and "content-encoding" not in response.headers, path
        assert "Accept-Encoding" in response.headers["vary"]  # a larger answer of the same route may be gzip
    posted = await alice.post(f"/api/agents/{AGENT}/logs", json={"message": "one more"}, headers=GZIP)
    assert posted.status_code == 200 and "content-encoding" not in posted.headers and "vary" not in posted.headers


async def test_errors_are_sent_as_they_are(alice: httpx.AsyncClient) -> None:
    response = await fetch(alice, "/api/agents/nobody-here/logs", GZIP)
    assert response.status == 404 and "content-encoding" not in response.headers
    assert json.loads(response.raw)["error"]["code"] == "agent_not_found"


async def test_vary_keeps_origin_with_cors(start_server: Any) -> None:
    server = await start_server(**{"server.cors_origins": ["https://app.example"]})
    async with server.client("alice") as client:
        response = await fetch(client, "/api/openapi.json", {**GZIP, "Origin": "https://app.example"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Origin, Accept-Encoding"


# ---- event streams ---------------------------------------------------------------------------------------------


def stream_request(server: RunningServer, path: str, encoding: str) -> bytes:
    """A GET of an event stream as alice, with Accept-Encoding `encoding`."""
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token('alice')}\r\n"
    return f"{head}Accept-Encoding: {encoding}\r\n\r\n".encode()


class GzipStream:
    """An event stream read over a raw socket: de-chunked, then inflated as the bytes come (zlib.decompressobj), so
    an event counts as received only once its bytes have been inflated."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.head = b""
        self.inflater = zlib.decompressobj(31)
        self.text = b""
        self.ended = False

    async def open(self, server: RunningServer, path: str, encoding: str = "gzip") -> None:
        """Send the request and read the answer's head."""
        self.writer.write(stream_request(server, path, encoding))
        self.head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)

    async def _chunk(self) -> bytes | None:
        size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        if size == 0:
            self.ended = True
            return None
        return data[:-2]

    async def until(self, wanted: bytes, timeout: float = 5.0) -> float:
        """Read until the inflated text holds `wanted`; the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        while wanted not in self.text:
            chunk = await asyncio.wait_for(self._chunk(), max(0.05, deadline - time.monotonic()))
            assert chunk is not None, f"the stream ended before {wanted!r}: {self.text[-300:]!r}"
            self.text += self.inflater.decompress(chunk)
        return time.monotonic() - started

    async def to_the_end(self, timeout: float = 5.0) -> None:
        """Read the rest of the stream: it must end with the gzip member's end (CRC and length checked)."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            chunk = await asyncio.wait_for(self._chunk(), max(0.05, deadline - time.monotonic()))
            if chunk is not None:
                self.text += self.inflater.decompress(chunk)
        assert self.inflater.eof and self.inflater.unused_data == b""


@asynccontextmanager
async def gzip_stream(server: RunningServer, path: str, encoding: str = "gzip") -> AsyncIterator[GzipStream]:
    """A raw stream opened with Accept-Encoding `encoding`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    stream = GzipStream(reader, writer)
    try:
        await stream.open(server, path, encoding)
        yield stream
    finally:
        writer.close()


STREAMS = [
    stream_path(AGENT),  # seed 000's events
    f"/api/v1/stream-logs/request/{AGENT}",  # seed 001's
    f"/api/streams?agent={AGENT}",  # several agents
]


@pytest.mark.parametrize("path", STREAMS)
async def test_stream_read_through_gzip_receives_each_event_as_it_is_posted(
    server: RunningServer, alice: httpx.AsyncClient, path: str
) -> None:
    await create_agent(alice, id=AGENT)
    await post_lines(alice, AGENT, ["stored before the stream opened"])
    async with gzip_stream(server, path) as stream:
        assert b"Content-Encoding: gzip" in stream.head and b"Vary: Accept-Encoding" in stream.head
        await stream.until(b"stored before the stream opened")
        for n in range(5):
            await post_lines(alice, AGENT, [f"live line {n}"])
            # Each event is flushed whole: it inflates before anything else is sent.
            assert await stream.until(f"live line {n}".encode()) < 2.0
        await set_status(alice, AGENT, "completed")
        await stream.to_the_end()
    assert stream.text.count(b'"message":"live line') == 5


async def test_agent_events_read_through_gzip(server: RunningServer, alice: httpx.AsyncClient) -> None:
    async with gzip_stream(server, "/api/agent-events") as stream:
        assert b"Content-Encoding: gzip" in stream.head
        await stream.until(b"snapshot")
        await create_agent(alice, id="gz-announced")
        assert await stream.until(b"gz-announced") < 2.0


async def test_streams_that_share_a_batch_each_receive_it_whole(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    """Lines committed once reach gzip streams (deflated once for all of them) and a stream without gzip alike."""
    await create_agent(alice, id=AGENT)
    path = stream_path(AGENT)
    async with (
        gzip_stream(server, path) as first,
        gzip_stream(server, path) as second,
        gzip_stream(server, path, "identity") as plain,
    ):
        assert b"Content-Encoding" not in plain.head
        await post_lines(alice, AGENT, ["opening line"])
        for stream in (first, second):
            await stream.until(b"opening line")
        await _read_plain(plain, b"opening line")
        for n in range(20):
            await post_lines(alice, AGENT, [f"batch {n} line {k}" for k in range(n % 4 + 1)])
        await set_status(alice, AGENT, "completed")
        for stream in (first, second):
            await stream.to_the_end()
        await _read_plain(plain, b'"final":true')
    # The same lines, in order, and the same end, whatever way each stream received them.
    assert lines_of(first.text) == lines_of(second.text) == lines_of(plain.text)
    assert len(lines_of(plain.text)) == 1 + sum(n % 4 + 1 for n in range(20)) + 1  # and the final event


def lines_of(text: bytes) -> list[tuple[int, str]]:
    """(seq, message) of every line the seed 000 events of a stream's text carried, and (0, "final") for its end."""
    found: list[tuple[int, str]] = []
    for event in text.split(b"\n\n"):
        for field in event.split(b"\n"):
            if field.startswith(b"data: "):
                data = json.loads(field[6:])
                found += [(line["seq"], line["message"]) for line in data["lines"]]
                found += [(0, "final")] if data.get("final") else []
    return found


async def _read_plain(stream: GzipStream, wanted: bytes) -> None:
    deadline = time.monotonic() + 5
    while wanted not in stream.text:
        chunk = await asyncio.wait_for(stream._chunk(), max(0.05, deadline - time.monotonic()))
        assert chunk is not None
        stream.text += chunk


async def _open_idle_streams(server: RunningServer, count: int, encoding: str) -> list[asyncio.StreamWriter]:
    """`count` streams of one agent opened and answered (head and retry hint read), then left idle."""
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(stream_request(server, stream_path("gz-idle"), encoding))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert (b"Content-Encoding: gzip" in head) == (encoding == "gzip")
        await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)  # the first chunk's size: the retry hint is sent
        writers.append(writer)
    return writers


@pytest.mark.slow  # opens 240 streams under tracemalloc
async def test_an_idle_gzip_stream_holds_no_compressor(start_server: Any) -> None:
    """Per idle stream, gzip adds well under 1 KB (a compressor would be 3-260 KB: zlib's allocations are traced
    too), and a gzip stream that has delivered lines holds no more than before."""
    server = await start_server(**{"limits.max_streams_per_user": 1000})
    count = 60
    async with server.client("alice") as client:
        await create_agent(client, id="gz-idle")
        held: dict[str, float] = {}
        tracemalloc.start()
        try:
            for encoding in ("identity", "gzip", "identity", "gzip"):
                before = tracemalloc.get_traced_memory()[0]
                writers = await _open_idle_streams(server, count, encoding)
                await post_lines(client, "gz-idle", [f"a line every stream delivers ({encoding})"])
                await asyncio.sleep(0.2)
                held[encoding] = min(held.get(encoding, 1e12), (tracemalloc.get_traced_memory()[0] - before) / count)
                for writer in writers:
                    writer.close()
                await asyncio.sleep(0.3)
        finally:
            tracemalloc.stop()
    assert held["gzip"] - held["identity"] < 1024, held


# ---- a real browser ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # a real browser
@pytest.mark.asyncio(loop_scope="module")
async def test_eventsource_in_chromium_reads_a_gzip_stream(browser: Any, site: RunningServer) -> None:
    """Chromium asks for gzip by itself: the viewer's files and an EventSource's stream come gzip, and a line posted
    after the stream opened reaches the page at once."""
    tab = await open_viewer(browser, site)
    answers: dict[str, tuple[str | None, str | None]] = {}

    async def note(response: Any) -> None:
        path = response.url.removeprefix(site.url).split("?")[0]
        asked = await response.request.header_value("accept-encoding")
        answers[path] = (asked, await response.header_value("content-encoding"))

    tab.page.on("response", note)
    try:
        await create_agent(tab.api, id="gz-browser")
        await post_lines(tab.api, "gz-browser", ["stored before the page opened the stream"])
        await tab.sign_in()
        url = f"{stream_path('gz-browser')}?token={tab.token}"
        await tab.page.evaluate(
            """(url) => {
                window.received = [];
                const source = new EventSource(url);
                source.onmessage = (event) => {
                    for (const line of JSON.parse(event.data).lines) window.received.push(line.message);
                };
            }""",
            url,
        )
        await received(tab.page, 1, 10.0)
        for n in range(3):
            posted = time.monotonic()
            await post_lines(tab.api, "gz-browser", [f"posted while the page watches {n}"])
            await received(tab.page, n + 2, 5.0)
            assert time.monotonic() - posted < 2.0
        assert await tab.page.evaluate("window.received") == [
            "stored before the page opened the stream",
            *(f"posted while the page watches {n}" for n in range(3)),
        ]
        stream = answers[stream_path("gz-browser")]
        assert "gzip" in (stream[0] or "") and stream[1] == "gzip"
        assert answers["/app.js"][1] == "gzip"  # the viewer's own files too
    finally:
        await close_viewer(tab)


async def received(page: Any, count: int, timeout: float) -> None:
    """Wait until the page's EventSource has received `count` lines (polled: the viewer's CSP forbids the eval
    behind Playwright's wait_for_function)."""
    deadline = time.monotonic() + timeout
    while await page.evaluate("() => window.received.length") < count:
        assert time.monotonic() < deadline, f"the page received {await page.evaluate('() => window.received')}"
        await asyncio.sleep(0.02)
