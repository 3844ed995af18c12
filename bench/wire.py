"""What the load tool puts on the wire: marked lines, OTLP bodies for Sentra, the three servers' routes, HTTP/1.1
and SSE clients.

Every published line carries a marker `M<pub>:<n>:<t>` in its message: the publisher's id, its own
counter (0, 1, 2, ...) and the monotonic send time in nanoseconds (CLOCK_MONOTONIC is shared by all
processes of the machine). A subscriber finds the markers with one regular expression: in Sentra's
events they appear as `"message":"M..."` once per entry of the `lines` array (the `logs` text carries
the same words without the `"message":` key, so it is not counted twice); in nchan's and the peer's
events the data is the published line itself. The strict mode parses every event as JSON instead, and
the smoke test checks that both ways count the same.

The clients are asyncio Protocols over raw sockets: far cheaper per message than an HTTP library, which
matters because on two cores the load tool may saturate before the server does.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

MARK_RE = re.compile(rb'"message": ?"M(\d+):(\d+):(\d+)')
SEQ_RE = re.compile(rb'"seq": ?(\d+)')
LINE_SIZE = 170
MAX_TRACKED_GAP = 10_000  # a larger jump is counted as lost without remembering each missing number
MAX_RESUMES = 50  # reconnections of one subscriber after the server cut its stream
RESUME_DELAY = 0.05
_PAD = b"x" * LINE_SIZE


def marked_line(pub: int, n: int, sent: int) -> bytes:
    """One JSON line of ~170 bytes whose message starts with the marker."""
    head = b'{"level":"info","message":"M%d:%d:%d ' % (pub, n, sent)
    return head + _PAD[: max(0, LINE_SIZE - len(head) - 2)] + b'"}'


def marked_body(pub: int, first: int, count: int) -> bytes:
    """`count` lines with consecutive counters, stamped now: one JSON object, or NDJSON for count > 1."""
    sent = time.monotonic_ns()
    if count == 1:
        return marked_line(pub, first, sent)
    return b"\n".join([marked_line(pub, n, sent) for n in range(first, first + count)]) + b"\n"


_ROUTES = ("/api/v1/items", "/api/v1/items/{id}", "/api/v1/orders", "/api/v1/search", "/healthz")
_METHODS = ("GET", "GET", "GET", "POST", "PUT")


def agent_line(n: int) -> dict[str, Any]:
    """Line `n` as agents really send them: an access-log message, a level, a source and a small `fields` object,
    each a little different from the last so that nothing along the way is trivially cached."""
    route, method = _ROUTES[n % len(_ROUTES)], _METHODS[n % len(_METHODS)]
    status = 500 if n % 97 == 96 else 404 if n % 23 == 22 else 200
    path = route.replace("{id}", str(1000 + n % 911))
    return {
        "message": f"{method} {path}?page={n % 50 + 1} {status} {10 + n % 7}.{n % 10}ms request {n:08x}",
        "level": "ERROR" if status == 500 else "WARNING" if status == 404 else "INFO",
        "source": "web",
        "fields": {"route": route, "status": status},
    }


def agent_body(count: int, first: int = 0) -> bytes:
    """`count` agent lines: one JSON object for one line, NDJSON for more."""
    if count == 1:
        return json.dumps(agent_line(first)).encode()
    return b"".join(json.dumps(agent_line(n)).encode() + b"\n" for n in range(first, first + count))


OTLP_LOGS_PATH = "/v1/logs"  # Sentra's OTLP/HTTP logs endpoint


def otlp_body(agent_id: str, count: int) -> bytes:
    """An OTLP/HTTP ExportLogsServiceRequest in binary protobuf, built with opentelemetry-proto's classes: `count`
    records for one agent, each like a line an instrumented agent sends (an access-log message, INFO, its logger as
    the instrumentation scope, so the source, the route and the status as attributes, its times)."""
    # Sentra's own dependency; only the OTLP scenario needs it.
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for key, value in (("sentra.agent.id", agent_id), ("service.name", "bench-api")):
        resource_logs.resource.attributes.add(key=key, value=AnyValue(string_value=value))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "api.access"
    route = KeyValue(key="http.route", value=AnyValue(string_value="/api/v1/items"))
    status = KeyValue(key="http.response.status_code", value=AnyValue(int_value=200))
    now = time.time_ns()
    for n in range(count):
        message = f"GET /api/v1/items?page={n % 50 + 1} 200 {10 + n % 7}.{n % 10}ms"
        scope_logs.log_records.add(
            time_unix_nano=now + n * 1000,
            observed_time_unix_nano=now + n * 1000,
            severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
            severity_text="INFO",
            body=AnyValue(string_value=message),
            attributes=[route, status],
        )
    return request.SerializeToString()


@dataclass
class Target:
    """One server under test: how to publish to a channel and subscribe to it.

    sentra: POST /api/agents/{ch}/logs, GET /api/agents/{ch}/logs/stream, each channel an agent owned by
    its own user (the default limit of open streams is per user); nchan and peer: /pub/{ch}, /sub/{ch}.
    """

    kind: str
    port: int
    host: str = "127.0.0.1"
    secret: str = ""
    gzip: bool = False  # subscribers ask for gzip (Accept-Encoding: gzip) and inflate what comes
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def token(self, channel: str) -> str:
        """A signed token for the channel's owner (Sentra only)."""
        if channel not in self._tokens:
            import jwt  # Sentra's own dependency; only needed for Sentra

            claims = {"sub": f"bench-{channel}", "iat": int(time.time()), "jti": f"bench-{channel}"}
            self._tokens[channel] = jwt.encode(claims, self.secret, algorithm="HS256")
        return self._tokens[channel]

    def pub_path(self, channel: str) -> str:
        """Where lines are POSTed."""
        return f"/api/agents/{channel}/logs" if self.kind == "sentra" else f"/pub/{channel}"

    def sub_path(self, channel: str) -> str:
        """The EventSource URL path."""
        return f"/api/agents/{channel}/logs/stream" if self.kind == "sentra" else f"/sub/{channel}"

    def headers(self, channel: str) -> dict[str, str]:
        """Headers every request to this channel carries."""
        return {"Authorization": f"Bearer {self.token(channel)}"} if self.kind == "sentra" else {}

    def pub_request(self, channel: str, lines: int) -> bytes:
        """The request head of a POST of `lines` lines, up to the Content-Length value."""
        ctype = "application/json" if lines == 1 else "application/x-ndjson"
        return request_head("POST", self.pub_path(channel), self, {**self.headers(channel), "Content-Type": ctype})

    def sub_request(self, channel: str) -> bytes:
        """The full GET request that opens an SSE stream."""
        headers = {**self.headers(channel), "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.gzip:
            headers["Accept-Encoding"] = "gzip"
        return request_head("GET", self.sub_path(channel), self, headers, body=False)

    async def prepare(self, channels: list[str]) -> None:
        """Make the channels exist: Sentra needs its agents before they can be watched."""
        if self.kind != "sentra":
            return
        conn = await HttpConnection.open(self.host, self.port)
        try:
            for channel in channels:
                body = json.dumps({"id": channel}).encode()
                head = request_head(
                    "POST", "/api/agents", self, {**self.headers(channel), "Content-Type": "application/json"}
                )
                status, answer = await conn.request(head + b"%d\r\n\r\n" % len(body) + body)
                if status != 201:
                    raise RuntimeError(f"creating agent {channel}: {status} {answer[:200]!r}")
        finally:
            conn.close()


def request_head(method: str, path: str, target: Target, headers: dict[str, str], *, body: bool = True) -> bytes:
    """An HTTP/1.1 request head; with body=True it ends in 'Content-Length: ' for the caller to complete."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    text = "\r\n".join(lines) + "\r\n"
    return (text + "Content-Length: ").encode() if body else (text + "\r\n").encode()


class HttpConnection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection: one request at a time, answers read by Content-Length
    or chunked encoding."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        """Connect to host:port."""
        _, conn = await asyncio.get_running_loop().create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            answer = self._parse()
            if answer is not None:
                self.waiter.set_result(answer)

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        start = end + 4
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop > 0 else len(head)])
            if len(buf) < start + length:
                return None
            body = bytes(buf[start : start + length])
            del buf[: start + length]
            return status, body
        if b"transfer-encoding: chunked" in head:
            parts, pos = [], start
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
                if len(buf) < eol + 2 + size + 2:
                    return None
                parts.append(bytes(buf[eol + 2 : eol + 2 + size]))
                pos = eol + 2 + size + 2
                if size == 0:
                    del buf[:pos]
                    return status, b"".join(parts)
        del buf[:start]
        return status, b""

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one complete request and wait for its answer: (status, body)."""
        if self.lost is not None or self.transport is None:
            raise ConnectionResetError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        answer = self._parse() if self.buf else None
        if answer is not None:
            self.waiter.set_result(answer)
        return await self.waiter

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()


class Tally:
    """What one subscriber process saw: lines, events, order errors and every line's latency."""

    def __init__(self) -> None:
        self.latencies = array("q")
        self.first_recv = 0
        self.last_recv = 0


class SseSubscriber(asyncio.Protocol):
    """One EventSource connection: de-chunks the body and counts the marked lines in it."""

    def __init__(
        self,
        request: bytes,
        tally: Tally,
        *,
        channel: str = "",
        check_seq: bool = False,
        strict: str = "",
        resume: tuple[str, int] | None = None,
    ) -> None:
        self.request = request
        self.resume = resume  # (host, port) to reconnect to with Last-Event-ID when the server cuts the stream
        self.pending_request = b""
        self.cuts = 0
        self.resumes = 0
        self.closing = False
        self.channel = channel
        self.tally = tally
        self.check_seq = check_seq
        self.strict = strict  # "", "sentra" (count entries of `lines`) or "line" (one line per event)
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.error = ""
        self.head = bytearray()
        self.chunked = False
        self.inflater: Any = None  # a zlib decompressor when the answer is gzip
        self.chunk_left = 0
        self.need_crlf = False
        self.cbuf = bytearray()
        self.sbuf = bytearray()
        self.ebuf = bytearray()
        self.nexts: dict[int, int] = {}
        self.expected: dict[int, int] | None = None
        self.count = 0
        self.events = 0
        self.strict_count = 0
        self.gaps = 0
        self.disorder = 0
        self.repeats = 0
        self.missing: set[tuple[int, int]] = set()
        self.skipped = 0
        self.seq_errors = 0
        self.next_seq = 0
        self.ended = False
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        transport.write(self.pending_request or self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.ready.done():
            self.error = self.error or f"closed before the answer ({exc})"
            self.ready.set_result(0)
        if not self.closing and self.status == 200 and not self.complete():
            self.cuts += 1
            if self.resume is not None and self.resumes < MAX_RESUMES:
                # As EventSource does (sooner than its retry hint, so the measurement does not stall).
                self.resumes += 1
                loop = asyncio.get_running_loop()
                loop.call_later(RESUME_DELAY, lambda: loop.create_task(self._reconnect()))
                return
        self.ended = True
        if not self.closed.done():
            self.closed.set_result(None)

    async def _reconnect(self) -> None:
        """Open the stream again from the last seq received, with the counting state kept."""
        self.status, self.head, self.chunked, self.chunk_left, self.need_crlf = 0, bytearray(), False, 0, False
        self.cbuf, self.sbuf, self.ebuf = bytearray(), bytearray(), bytearray()
        request = self.request
        if self.next_seq:
            request = request[:-2] + b"Last-Event-ID: %d\r\n\r\n" % (self.next_seq - 1)
        assert self.resume is not None
        try:
            await asyncio.get_running_loop().create_connection(lambda: self._resumed(request), *self.resume)
        except OSError as exc:
            self.error = f"resume {self.resumes} failed: {exc}"
            self.connection_lost(exc)

    def _resumed(self, request: bytes) -> SseSubscriber:
        self.pending_request = request
        return self

    def data_received(self, data: bytes) -> None:
        if self.status == 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[:end]).lower()
            self.status = int(head[9:12])
            self.chunked = b"transfer-encoding: chunked" in head
            self.inflater = zlib.decompressobj(31) if b"content-encoding: gzip" in head else None
            data = bytes(self.head[end + 4 :])
            self.head = bytearray()
            if self.status != 200:
                self.error = f"status {self.status} after {self.resumes} resumes: {data[:200]!r}"
            if not self.ready.done():
                self.ready.set_result(self.status)
            if not data:
                return
        payload = self._dechunk(data) if self.chunked else data
        if payload and self.inflater is not None:
            payload = self.inflater.decompress(payload)
        if payload:
            self._feed(payload)

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.cbuf
        buf += data
        out, pos, size = [], 0, len(buf)
        while True:
            if self.chunk_left:
                take = min(self.chunk_left, size - pos)
                out.append(bytes(buf[pos : pos + take]))
                pos += take
                self.chunk_left -= take
                if self.chunk_left:
                    break
                self.need_crlf = True
            if self.need_crlf:
                if size - pos < 2:
                    break
                pos += 2
                self.need_crlf = False
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            length = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if length == 0:
                self.ended = True
                break
            self.chunk_left = length
        del buf[:pos]
        return b"".join(out)

    def _feed(self, payload: bytes) -> None:
        sbuf = self.sbuf
        sbuf += payload
        cut = sbuf.rfind(b"\n")
        if cut < 0:
            return
        block = bytes(sbuf[: cut + 1])
        del sbuf[: cut + 1]
        now = time.monotonic_ns()
        marks = MARK_RE.findall(block)
        self.events += block.count(b"data:")
        if self.strict:
            self._strict(block)
        if not marks:
            return
        tally = self.tally
        if not tally.first_recv:
            tally.first_recv = now
        tally.last_recv = now
        lat = tally.latencies.append
        nexts = self.nexts
        repeats = self.repeats
        for pub_b, n_b, sent_b in marks:
            pub, n = int(pub_b), int(n_b)
            want = nexts.get(pub, 0)
            if n != want:
                if n < want:
                    # Late or repeated: a line that was skipped earlier is no longer missing.
                    if (pub, n) in self.missing:
                        self.missing.discard((pub, n))
                        self.disorder += 1
                    else:
                        self.repeats += 1
                    continue
                self.gaps += 1
                if n - want <= MAX_TRACKED_GAP:
                    self.missing.update((pub, k) for k in range(want, n))
                else:
                    self.skipped += n - want
            nexts[pub] = n + 1
            lat(now - int(sent_b))
        self.count += len(marks) - (self.repeats - repeats)
        if self.check_seq:
            for seq_b in SEQ_RE.findall(block):
                seq = int(seq_b)
                if self.next_seq and seq != self.next_seq:
                    self.seq_errors += 1
                self.next_seq = seq + 1
        if self.done is not None and self.complete():
            self.done.set_result(None)
            self.done = None

    def _strict(self, block: bytes) -> None:
        """Parse every complete event as JSON and count its lines the way a client would."""
        self.ebuf += block.replace(b"\r\n", b"\n")
        end = self.ebuf.rfind(b"\n\n")
        if end < 0:
            return
        events = bytes(self.ebuf[:end]).split(b"\n\n")
        del self.ebuf[: end + 2]
        for event in events:
            data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
            if not data:
                continue
            obj: Any = json.loads(data)
            if self.strict == "sentra":
                for line in obj["lines"]:
                    assert str(line["message"]).startswith("M"), line
                    self.strict_count += 1
            elif str(obj.get("message", "")).startswith("M"):
                self.strict_count += 1

    def expect(self, published: dict[int, int]) -> None:
        """Set how many lines each publisher sent to this subscriber's channel."""
        self.expected = published

    def complete(self) -> bool:
        """True once every expected line (per publisher) has arrived; False until told what to expect."""
        if self.expected is None:
            return False
        return all(self.nexts.get(pub, 0) >= count for pub, count in self.expected.items())

    def lost(self) -> int:
        """Expected lines that never arrived (skipped ones that came late are not lost, only out of order)."""
        unseen = sum(max(0, count - self.nexts.get(pub, 0)) for pub, count in (self.expected or {}).items())
        return unseen + len(self.missing) + self.skipped

    def close(self) -> None:
        """Close the socket (no resume after this)."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()


def percentiles(values: array[int] | list[int], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles and the maximum, in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)
    out = {f"p{p:g}_ms": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] / 1e6 for p in points}
    out["max_ms"] = ordered[-1] / 1e6
    return {key: round(value, 3) for key, value in out.items()}
