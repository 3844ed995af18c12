"""HTTP1Server: Sentra's HTTP/1.1 server, serving the route table's handlers over asyncio transports.

Tornado's own server reads every request through an IOStream coroutine with futures and timeouts per read, which
costs more than Sentra's whole handling of a one-line POST. This server reads requests by Tornado's rules (the
same limits and answers to malformed input; parsing.py) but is driven by asyncio's protocol callbacks: a keep-alive
request costs a buffer search and a few calls, and an idle stream holds a transport and one small object.

One HTTP1Protocol per connection moves through its buffer (head, fixed or chunked body) and times the client out;
the delegate (the Router) gives each request its Handler, and the Exchange (exchange.py) writes the answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from http.client import responses
from typing import Any

import tornado.iostream
from tornado import httputil

from sentra.http.exchange import Context, Exchange
from sentra.http.parsing import (
    InputError,
    content_length,
    is_chunked,
    parse_headers,
    parse_hex_int,
    parse_request_line,
)

log = logging.getLogger("sentra.http")
app_log = logging.getLogger("tornado.application")

MAX_HEADER_SIZE = 65536  # Tornado's default
READ_PAUSE_BYTES = 256 * 1024  # unread input kept while a request is being answered; past it, stop reading
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"
# Python 3.11's selector transport keeps a bound method of itself (`_read_ready_cb`) that nothing public clears, so a
# closed connection waits for the cycle collector; 3.12 drops it on close (CPython gh-100348). Before 3.12
# connection_lost drops it by name, the one private attribute Sentra touches (pinned in tests/test_http1.py).
_DROP_READ_CALLBACK = sys.version_info < (3, 12)


def _done(exc: BaseException | None = None) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
        future.exception()  # nobody has to look at it
    return future


# Where the reader is in a request.
_HEAD, _FIXED, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _LAST_CRLF, _ANSWERING, _CLOSED = range(8)


class HTTP1Protocol(asyncio.Protocol):
    """One client connection: reads requests one after another and hands each to the application."""

    # Thousands of these stay open as event streams: no per-instance __dict__.
    __slots__ = (
        "_deadline",
        "_drain",
        "_drain_paused",
        "_timer",
        "body_left",
        "body_total",
        "buffer",
        "closing",
        "context",
        "delegate",
        "exchange",
        "reading_paused",
        "server",
        "state",
        "transport",
        "waiting",
    )

    transport: asyncio.Transport
    context: Context

    def __init__(self, server: HTTP1Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.state = _HEAD
        self.exchange: Exchange | None = None
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.body_left = 0  # bytes left of a fixed body or of the current chunk
        self.body_total = 0
        self.waiting = False  # the delegate returned an awaitable: nothing moves until it is done
        self.closing = False
        self.reading_paused = False
        self._drain: list[asyncio.Future[None]] = []
        self._drain_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # in loop time: when the connection is cut, unless None

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        self.context = Context(transport.get_extra_info("peername"), sock.family if sock is not None else 0)
        self.server.connections.add(self)
        if self.server.on_open is not None:
            self.server.on_open()
        self._arm(self.server.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.state == _CLOSED:
            return
        self.buffer += data
        if not self.waiting:
            self._advance()
        if len(self.buffer) > READ_PAUSE_BYTES and not self.reading_paused and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close: a client that stopped sending is gone (as Tornado treats it)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        state, self.state = self.state, _CLOSED
        if _DROP_READ_CALLBACK and getattr(self.transport, "_read_ready_cb", None) is not None:
            self.transport._read_ready_cb = None  # type: ignore[attr-defined]
        self.server.connections.discard(self)
        if not self.server.connections:
            self.server.closed.set()
        if self.server.on_close is not None:
            self.server.on_close(len(self.server.connections))
        self.drop_timer()
        for future in self._drain:
            if not future.done():
                future.set_exception(tornado.iostream.StreamClosedError())
                future.exception()
        self._drain.clear()
        exchange, delegate = self.exchange, self.delegate
        self.exchange = self.delegate = None
        if exchange is None:
            return
        if state not in (_HEAD, _ANSWERING) and delegate is not None:
            self._call(delegate.on_connection_close)
        if not exchange.write_finished and exchange.close_callback is not None:
            callback, exchange.close_callback = exchange.close_callback, None
            self._call(callback)

    def pause_writing(self) -> None:
        self._drain_paused = True

    def resume_writing(self) -> None:
        self._drain_paused = False
        waiters, self._drain = self._drain, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    # ---- writing -------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write `data`; the future resolves when the transport is below its high-water mark again."""
        if self.closing:
            return _done(tornado.iostream.StreamClosedError())
        if data:
            self.transport.write(data)
        if not self._drain_paused:
            return _done()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain.append(future)
        return future

    def close(self) -> None:
        """Close after what is already written has been sent."""
        if not self.closing:
            self.closing = True
            self.drop_timer()
            self.transport.close()

    def response_finished(self, exchange: Exchange) -> None:
        """The current response is complete: close, or go on to the next request."""
        if exchange is not self.exchange:
            return
        if not exchange.read_finished and not exchange.awaiting_continue:
            # The client may still be sending its body: closing now, with its bytes unread, would reset the
            # connection and destroy the answer before the client reads it. The body is read (up to the body size
            # limit and the body timeout) and dropped, and _body_done closes.
            return
        if not exchange.keep_alive:
            self.close()
            return
        self._next_request()

    # ---- reading -------------------------------------------------------------------------------

    def _next_request(self) -> None:
        self.exchange = self.delegate = None
        self.state = _HEAD
        self._arm(self.server.header_timeout)
        if self.buffer and not self.waiting:
            asyncio.get_running_loop().call_soon(self._advance)
        elif self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def _advance(self) -> None:
        """Move through the buffer as far as it goes; stops at a pending delegate call or missing bytes."""
        try:
            while not self.waiting and self.state not in (_CLOSED, _ANSWERING) and not self.closing:
                if not self._step():
                    break
        except httputil.HTTPInputError as exc:
            self._refuse(exc)
        if self.reading_paused and len(self.buffer) <= READ_PAUSE_BYTES and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def _step(self) -> bool:
        """One move of the reader; False when it needs more bytes."""
        state = self.state
        buffer = self.buffer
        if state == _HEAD:
            return self._read_head()
        if state == _FIXED:
            if not self._take_body():
                return False
            if self.body_left == 0:
                self._body_done()
            return True
        if state == _CHUNK_SIZE:
            # The size line with its CRLF fits in 64 bytes, as Tornado reads it (llhttp reads any number of zeros).
            end = buffer.find(b"\r\n", 0, 64)
            if end < 0:
                if len(buffer) >= 64:
                    raise InputError("invalid chunk size")
                return False
            try:
                size = parse_hex_int(bytes(buffer[:end]).decode("latin1"))
            except ValueError:
                raise InputError("invalid chunk size") from None
            del buffer[: end + 2]
            if size == 0:
                self.state = _LAST_CRLF
                return True
            self.body_total += size
            if self.body_total > self._exchange().max_body_size:
                raise InputError("chunked body too large", 413)
            self.body_left = size
            self.state = _CHUNK_DATA
            return True
        if state == _CHUNK_DATA:
            if not self._take_body():
                return False
            if self.body_left == 0:
                self.state = _CHUNK_END
            return True
        if state in (_CHUNK_END, _LAST_CRLF):
            if len(buffer) < 2:
                return False
            if buffer[:2] != b"\r\n":
                raise InputError("improperly terminated chunked request")
            del buffer[:2]
            if state == _LAST_CRLF:
                self._body_done()
            else:
                self.state = _CHUNK_SIZE
            return True
        return False

    def _take_body(self) -> bool:
        """Hand the buffered bytes of the body (up to `body_left`) to the handler; False if none are buffered."""
        buffer = self.buffer
        if not buffer:
            return False
        take = min(len(buffer), self.body_left)
        self.body_left -= take
        chunk = bytes(buffer[:take])
        del buffer[:take]
        self._deliver(chunk)
        return True

    def _read_head(self) -> bool:
        buffer = self.buffer
        found = _HEAD_END.search(buffer)
        if found is None:
            if len(buffer) > MAX_HEADER_SIZE:
                raise InputError(f"the request's headers are above {MAX_HEADER_SIZE} bytes", 431)
            return False
        end = found.end()
        if end > MAX_HEADER_SIZE:
            raise InputError(f"the request's headers are above {MAX_HEADER_SIZE} bytes", 431)
        text = buffer[:end].decode("latin1").lstrip("\r\n")
        del buffer[:end]
        if not text:
            # The head's end was found in empty lines before any request line. Tornado refuses these too; one empty
            # line before a request (RFC 9112 2.2: "at least one") is skipped by lstrip above, as Tornado does.
            raise InputError("Malformed HTTP request line: more than one empty line before it")
        eol = text.find("\n")
        if text[eol - 1] != "\r":
            # Bare LFs end header lines (RFC 9112 2.2 allows it, Tornado does it) but not the request line: llhttp
            # never reads one there, and in its lenient mode reads "GET / HTTP/1.1\n\n" as a request line and no end
            # of head, so a front server running it would frame what follows otherwise than Sentra.
            raise InputError("Malformed HTTP request line: end it with CRLF")
        start_line = parse_request_line(text[: eol - 1])
        headers = parse_headers(text[eol:])
        self._disarm()
        exchange = self.exchange = Exchange(self, start_line, headers)
        self.state = _ANSWERING  # until headers_received says how the body is read
        delegate = self.delegate = self.server.delegate.start_request(self, exchange)
        self._then(self._call(delegate.headers_received, start_line, headers), self._start_body)
        return True

    def _start_body(self) -> None:
        """Choose how to read the body, as Tornado's HTTP1Connection does, once headers_received is done."""
        exchange = self._exchange()
        headers = exchange.request_headers
        if exchange.awaiting_continue and not exchange.write_finished:
            self.transport.write(_CONTINUE)
            exchange.awaiting_continue = False
        length = content_length(headers)
        if length is not None and length > exchange.max_body_size:
            raise InputError("Content-Length too long", 413)
        self.body_total = 0
        if is_chunked(headers):
            self.state = _CHUNK_SIZE
        elif length:
            self.state = _FIXED
            self.body_left = length
        else:
            self._body_done()
            return
        self._arm(exchange.body_timeout)

    def _body_done(self) -> None:
        exchange = self._exchange()
        self._disarm()
        exchange.read_finished = True
        self.state = _ANSWERING
        if not exchange.write_finished:
            assert self.delegate is not None
            self._call(self.delegate.finish)
        else:
            self.close()  # answered before its body, which was read only so that the client reads the answer

    def _deliver(self, chunk: bytes) -> None:
        exchange = self._exchange()
        if not exchange.write_finished and self.delegate is not None:
            self._then(self._call(self.delegate.data_received, chunk), None)

    def _exchange(self) -> Exchange:
        assert self.exchange is not None
        return self.exchange

    def _then(self, result: Awaitable[None] | None, after: Callable[[], None] | None) -> None:
        """Go on once a delegate call's awaitable (if it returned one) is done."""
        if result is None or self.closing:
            if after is not None and not self.closing:
                after()
            return
        self.waiting = True
        future = asyncio.ensure_future(result)

        def resume(done: asyncio.Future[None]) -> None:
            self.waiting = False
            if done.cancelled() or done.exception() is not None:
                if not done.cancelled():
                    app_log.error("Uncaught exception", exc_info=done.exception())
                self.close()
                return
            if self.closing:
                return
            try:
                if after is not None:
                    after()
            except httputil.HTTPInputError as exc:
                self._refuse(exc)
                return
            self._advance()

        future.add_done_callback(resume)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """A delegate call: an exception is logged and closes the connection, as in Tornado."""
        try:
            return method(*args)
        except httputil.HTTPInputError:
            raise
        except Exception:
            app_log.error("Uncaught exception", exc_info=True)
            self.close()
            return None

    def _refuse(self, error: httputil.HTTPInputError) -> None:
        """Answer a request that cannot be read, in words, and close."""
        message, status = str(error), getattr(error, "status", 400)
        log.info("malformed HTTP request from %s: %s", self.context, message)
        exchange = self.exchange
        if exchange is None or not exchange.headers_written:
            reason = responses.get(status, "Bad Request")
            body = f"{message}\n".encode()
            self.transport.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin1")
                + body
            )
        self.close()

    # ---- timeouts ------------------------------------------------------------------------------

    def _arm(self, seconds: float | None) -> None:
        """Cut the connection `seconds` from now, unless disarmed or armed again before.

        Every request arms and disarms twice (headers, body): a timer made and cancelled each time cost a twentieth
        of a one-line POST. The deadline moves instead; the timer, made when there is none or it would fire too
        late, looks at the deadline when it fires and waits again if it has moved.
        """
        if not seconds:
            self._deadline = None
            return
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + seconds
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._deadline_reached)

    def _disarm(self) -> None:
        self._deadline = None

    def drop_timer(self) -> None:
        """Disarm and free the timer: the connection is closing, or its answer may last (an event stream)."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_reached(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._deadline_reached)
            return
        self._deadline = None
        if self.state != _HEAD:
            log.info("timeout reading body from %s", self.context)
        self.close()


class HTTP1Server:
    """Listens on sockets and serves `delegate` (the Tornado Application) over HTTP/1.1."""

    def __init__(
        self,
        delegate: httputil.HTTPServerConnectionDelegate,
        *,
        max_body_size: int,
        header_timeout: float | None = None,
        body_timeout: float | None = None,
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[int], None] | None = None,
    ) -> None:
        self.delegate = delegate
        self.on_open = on_open  # called for each accepted connection
        self.on_close = on_close  # called with the number still open after each connection closes
        self.max_body_size = max_body_size
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.connections: set[HTTP1Protocol] = set()
        self.closed = asyncio.Event()
        self._servers: list[asyncio.Server] = []

    async def add_sockets(self, sockets: list[socket.socket], backlog: int = 1024) -> None:
        """Serve on bound sockets (tornado.netutil.bind_sockets makes them)."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            self._servers.append(await loop.create_server(lambda: HTTP1Protocol(self), sock=sock, backlog=backlog))

    def stop(self) -> None:
        """Stop accepting connections; open ones carry on."""
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def close_all_connections(self) -> None:
        """Close every open connection (after what is written to it is sent) and wait until all are gone."""
        for conn in list(self.connections):
            conn.close()
        while self.connections:
            self.closed.clear()
            await self.closed.wait()
