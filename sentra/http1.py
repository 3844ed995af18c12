"""HTTP1Server: Sentra's HTTP/1.1 server, serving the Tornado application over asyncio transports.

Tornado's own server reads every request through an IOStream coroutine with futures and timeouts per read,
which costs more than Sentra's whole handling of a one-line POST. This server parses with Tornado's own
functions (start line, headers, Content-Length and chunked framing, the same limits and the same answers to
malformed input) but is driven by asyncio's protocol callbacks: a keep-alive request costs a buffer search and
a few calls, and an idle stream holds a transport and one small object instead of a coroutine and its futures.
Handlers, routing and everything above `tornado.httputil.HTTPConnection` are Tornado's, unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from http.client import responses
from typing import Any

import tornado.iostream
from tornado import httputil
from tornado.http1connection import is_transfer_encoding_chunked, parse_hex_int, parse_int

log = logging.getLogger("sentra.http")
app_log = logging.getLogger("tornado.application")

MAX_HEADER_SIZE = 65536  # Tornado's default
READ_PAUSE_BYTES = 256 * 1024  # unread input kept while a request is being answered; past it, stop reading
_HEAD_END = re.compile(rb"\r?\n\r?\n")
# The start of an absolute-form target as llhttp reads one: a scheme of letters, "://", and an authority of RFC 3986's
# characters up to the path, the query or the end.
_ABSOLUTE_FORM = re.compile(r"[A-Za-z]+://[A-Za-z0-9._~!$&'()*+,;=:@%\[\]-]*(?:[/?]|\Z)")
_CR_OR_LF = re.compile(r"\r|\n")
# A header line as Tornado's HTTPHeaders.parse reads it without complaint: a token, a colon, and a value of visible
# ASCII with spaces and tabs only inside it (the whitespace around it is dropped).
_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = r"(?:[!-~]++(?:[ \t]++[!-~]++)*+)?"
_FIELD_LINE = re.compile(rf"({_NAME}):[ \t]*({_VALUE})[ \t]*\r?\n")
# The header block after the request line, from the line feed that ends it to the blank line, of such lines only.
_PLAIN_FIELDS = re.compile(rf"\n(?:{_NAME}:[ \t]*{_VALUE}[ \t]*\r?\n)*\r?\n")
_FOLDED = re.compile(r"(?:^|\n)[ \t]")  # an obs-fold line (RFC 9112 5.2)
_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"


class InputError(httputil.HTTPInputError):
    """A request Sentra cannot read: answered with `status` (Tornado's own HTTPInputError: 400) and the message,
    then the connection closes."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Context:
    """What HTTPServerRequest reads from `connection.context`: the peer's address and the scheme."""

    __slots__ = ("address", "protocol", "remote_ip")

    def __init__(self, address: Any, family: int) -> None:
        self.address = address
        self.remote_ip = address[0] if family in (socket.AF_INET, socket.AF_INET6) and address else "0.0.0.0"
        self.protocol = "http"

    def __str__(self) -> str:
        return str(self.remote_ip)


def _done(exc: BaseException | None = None) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
        future.exception()  # nobody has to look at it
    return future


class Exchange(httputil.HTTPConnection):
    """One request and its response on a connection: the `request.connection` Tornado's handlers write to."""

    def __init__(self, conn: HTTP1Protocol, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders):
        self.conn = conn
        self.context = conn.context
        self.start_line = start_line
        self.request_headers = headers
        self.max_body_size = conn.server.max_body_size
        self.body_timeout = conn.server.body_timeout
        self.keep_alive = _can_keep_alive(start_line, headers)
        # The client waits for "100 Continue" before sending the body: if the answer comes first, it never will.
        self.awaiting_continue = header_value(headers, "Expect") == "100-continue"
        self.read_finished = False
        self.write_finished = False
        self.headers_written = False
        self.chunked = False
        self.remaining: int | None = None  # body bytes the response still owes to its Content-Length
        self.close_callback: Callable[[], None] | None = None
        # Event streams: (end offset in the bytes written, lines in that chunk) of chunks not yet sent.
        self._written = 0
        self._owed: deque[tuple[int, int]] | None = None  # made on the first write the socket could not take
        self._owed_lines = 0

    # ---- tornado.httputil.HTTPConnection ---------------------------------------------------------

    def write_headers(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> asyncio.Future[None]:
        """Send the status line and headers (and the first chunk), framing the body as Tornado does."""
        assert isinstance(start_line, httputil.ResponseStartLine)
        request = self.start_line
        code = start_line.code
        self.chunked = (
            request.version == "HTTP/1.1"
            and request.method != "HEAD"
            and code not in (204, 304)
            and not 100 <= code < 200
            and not headers.get_list("Content-Length")
            and not headers.get_list("Transfer-Encoding")
        )
        if not self.read_finished:
            # An answer before the whole body: the rest is read and dropped, then the connection closes (a client
            # may stop sending a body once it has its answer, so no next request can be told from it).
            self.keep_alive = False
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
        if request.method == "HEAD" or code == 304:
            self.remaining = 0
        elif headers.get_list("Content-Length"):
            self.remaining = parse_int(headers["Content-Length"])
        else:
            self.remaining = None
            if not self.chunked and request.method != "HEAD" and code not in (204, 304):
                self.keep_alive = False  # the body ends when the connection does
        if request.version == "HTTP/1.1" and not self.keep_alive:
            headers["Connection"] = "close"
        if request.version == "HTTP/1.0" and self.keep_alive:
            headers["Connection"] = "Keep-Alive"
        lines = [f"HTTP/1.1 {code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.get_all())
        for line in lines:
            if _CR_OR_LF.search(line):
                raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
        self.headers_written = True
        if self.read_finished and self.conn.exchange is self:
            self.conn._drop_timer()  # nothing is timed while answering, and an answer in parts may last (a stream)
        data = "\r\n".join(lines).encode("latin1") + b"\r\n\r\n"
        if chunk:
            data += self._frame(chunk)
        return self.conn.send(data)

    def write_whole(self, head: bytes, body: bytes) -> None:
        """Send a whole answer and end the response, as write_headers with a Content-Length then finish do.

        `head` is the status line and the headers, each line ending in CRLF, Content-Length among them and no
        Connection (added here when the exchange needs one); `body` is all of the body. Not for answers to HEAD or
        answers that have no body by their status (1xx, 204, 304): write_headers frames those.
        """
        request = self.start_line
        if not self.read_finished:
            self.keep_alive = False  # as in write_headers
        if request.version == "HTTP/1.1" and not self.keep_alive:
            head += b"Connection: close\r\n"
        elif request.version == "HTTP/1.0" and self.keep_alive:
            head += b"Connection: Keep-Alive\r\n"
        self.headers_written = True
        self.remaining = 0
        conn = self.conn
        if not conn.closing:
            conn.transport.write(b"%b\r\n%b" % (head, body))
        self.write_finished = True
        conn.response_finished(self)

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        """Send part of the body; the future resolves once the connection can take more."""
        return self.conn.send(self._frame(chunk))

    def finish(self) -> None:
        """End the response; the connection then reads the next request, or closes."""
        conn = self.conn
        if self.remaining and not conn.closing:
            conn.close()
            raise httputil.HTTPOutputError(f"Tried to write {self.remaining} bytes less than Content-Length")
        if self.chunked:
            conn.send(b"0\r\n\r\n")
        self.write_finished = True
        conn.response_finished(self)

    # ---- what Tornado's HTTP1Connection also offers handlers ---------------------------------------

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` if the connection closes before the response is finished."""
        self.close_callback = callback

    def set_max_body_size(self, max_body_size: int) -> None:
        """The largest body this request may send (set before the body is read)."""
        self.max_body_size = max_body_size

    def set_body_timeout(self, timeout: float) -> None:
        """The longest wait for this request's body."""
        self.body_timeout = timeout

    def close(self) -> None:
        """Close the connection (if this exchange is still its current one)."""
        if self.conn.exchange is self:
            self.conn.close()

    # ---- event streams ------------------------------------------------------------------------

    def send_now(self, chunk: bytes, lines: int, max_owed: int) -> str | None:
        """Write an already framed body chunk carrying `lines` lines without waiting; "closed" if the client has
        gone, "overflow" if it still owes more than `max_owed` lines of earlier chunks (nothing is written then)."""
        conn = self.conn
        if conn.closing or conn.exchange is not self:
            return "closed"
        transport = conn.transport
        if self._owed:
            sent = self._written - transport.get_write_buffer_size()
            owed = self._owed
            while owed and owed[0][0] <= sent:
                self._owed_lines -= owed.popleft()[1]
            if self._owed_lines > max_owed:
                return "overflow"
        transport.write(chunk)
        self._written += len(chunk)
        if transport.get_write_buffer_size():
            if self._owed is None:
                self._owed = deque()
            self._owed.append((self._written, lines))
            self._owed_lines += lines
        return None

    def _frame(self, chunk: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(chunk)
            if self.remaining < 0:
                self.conn.close()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self.chunked and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk


def parse_headers(text: str) -> httputil.HTTPHeaders:
    """The header block after the request line (from the line feed that ends it) as HTTPHeaders.parse reads it.

    HTTPHeaders.parse checks each line with a few regular expressions and calls in Python, a twentieth of a
    one-line POST. A block of plain lines (the usual case) is checked and split by two regular expressions here;
    anything else (folded lines, control or non-ASCII bytes, no colon) goes to HTTPHeaders.parse, which answers
    it as before.
    """
    if _PLAIN_FIELDS.fullmatch(text) is None:
        if _FOLDED.search(text) is not None:
            # Tornado before 6.6 unfolds such lines (a first one even into the request line's last header):
            # refused here whatever the Tornado release, as RFC 9112 5.2 allows and 6.6 does.
            raise httputil.HTTPInputError("header line cannot start with whitespace, folding not supported")
        return httputil.HTTPHeaders.parse(text)
    headers = httputil.HTTPHeaders()
    for name, value in _FIELD_LINE.findall(text):
        # Setting a first value skips the name and value checks `add` would repeat (the regex made them).
        if name in headers:
            headers.add(name, value)
        else:
            headers[name] = value
    return headers


def parse_request_line(line: str) -> httputil.RequestStartLine:
    """The request line as Tornado's parse_request_start_line reads it, less what it lets through and llhttp refuses
    (found by tests/test_http1_differential.py): versions other than HTTP/1.0 and HTTP/1.1, and targets that are no
    path, no "*" and no absolute URL, or not ASCII."""
    start_line = httputil.parse_request_start_line(line)
    version, target = start_line.version, start_line.path
    if version != "HTTP/1.1" and version != "HTTP/1.0":
        # Tornado would read HTTP/1.2 to HTTP/1.9 by HTTP/1.0's rules of keep-alive, RFC 9110 2.5 by HTTP/1.1's.
        raise InputError(f"Unsupported HTTP version {version}: send HTTP/1.1 or HTTP/1.0")
    if not (target[0] in "/*" or _ABSOLUTE_FORM.match(target)) or not target.isascii():
        # RFC 9112 3.2: a server SHOULD answer 400 to a target in none of the forms, which are all ASCII. Tornado
        # reads any visible bytes, obs-text too.
        raise InputError(
            f"Invalid request target {target[:100]!r}: send a path, an absolute URL or *, in ASCII"
            " (percent-encode other bytes)"
        )
    return start_line


def header_value(headers: httputil.HTTPHeaders, name: str) -> str | None:
    """headers.get(name) (repeated fields joined by commas), without the KeyError HTTPHeaders raises and catches
    inside for a name the request did not send: a cost that showed in profiles of opening streams."""
    values = headers.get_list(name)
    return ",".join(values) if values else None


def _chunked(headers: httputil.HTTPHeaders) -> bool:
    """Tornado's is_transfer_encoding_chunked (400 for any other transfer coding), asked only when one was sent."""
    return bool(headers.get_list("Transfer-Encoding")) and is_transfer_encoding_chunked(headers)


def _can_keep_alive(start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> bool:
    connection = header_value(headers, "Connection")
    if connection is not None:
        connection = connection.lower()
        # RFC 9112 9.6: a "close" option anywhere in the list closes (Tornado closes only for the value "close";
        # llhttp reads the list, and a front server reading it so would see a connection Sentra keeps reading).
        if "close" in connection and "close" in {option.strip(" \t") for option in connection.split(",")}:
            return False
    if start_line.version == "HTTP/1.1":
        return True
    if headers.get_list("Transfer-Encoding"):
        # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding is read, but its framing is suspect (an HTTP/1.0
        # hop may have kept part of it), so the connection closes after it. Tornado and llhttp keep it open.
        return False
    if headers.get_list("Content-Length") or start_line.method in ("HEAD", "GET"):
        return connection == "keep-alive"
    return False


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
    context: _Context

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
        self.context = _Context(transport.get_extra_info("peername"), sock.family if sock is not None else 0)
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
        if getattr(self.transport, "_read_ready_cb", None) is not None:
            # asyncio's selector transport keeps a bound method of itself there and never clears it: left alone,
            # every closed connection (transport, socket, dicts) waits for the cycle collector to be freed.
            self.transport._read_ready_cb = None  # type: ignore[attr-defined]
        self.server.connections.discard(self)
        if not self.server.connections:
            self.server.closed.set()
        if self.server.on_close is not None:
            self.server.on_close(len(self.server.connections))
        self._drop_timer()
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
            self._drop_timer()
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
        length_header = header_value(headers, "Content-Length")
        length: int | None = None
        if length_header is not None:
            if headers.get_list("Transfer-Encoding"):
                raise InputError("Message with both Transfer-Encoding and Content-Length")
            if "," in length_header:
                # Only spaces and tabs may follow a comma, as Tornado splits it: "\s" would also take "\xa0" or
                # "\x85" (obs-text), and read "5,\xa05" as 5 where Tornado and llhttp refuse it.
                pieces = re.split(r",[ \t]*", length_header)
                if any(piece != pieces[0] for piece in pieces):
                    raise InputError(f"Multiple unequal Content-Lengths: {length_header!r}")
                length_header = headers["Content-Length"] = pieces[0]
            try:
                length = parse_int(length_header)
            except ValueError:
                raise InputError(f"Only integer Content-Length is allowed: {length_header}") from None
            if length > exchange.max_body_size:
                raise InputError("Content-Length too long", 413)
        self.body_total = 0
        if _chunked(headers):
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

    def _drop_timer(self) -> None:
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
