"""Exchange: one request and its response on a connection, the `request.connection` Tornado's handlers write to.

It frames the response as Tornado's HTTP1Connection does (Content-Length or chunked, keep-alive or close), sends
pre-rendered answers whole (write_whole) and writes event streams without waiting, counting the lines a reader still
owes (send_now). It sees its connection through `Connection`, what HTTP1Protocol offers it.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from tornado import httputil

from sentra.http.parsing import can_keep_alive, header_value, parse_int

_CR_OR_LF = re.compile(r"\r|\n")


class Context:
    """What HTTPServerRequest reads from `connection.context`: the peer's address and the scheme."""

    __slots__ = ("address", "protocol", "remote_ip")

    def __init__(self, address: Any, family: int) -> None:
        self.address = address
        self.remote_ip = address[0] if family in (socket.AF_INET, socket.AF_INET6) and address else "0.0.0.0"
        self.protocol = "http"

    def __str__(self) -> str:
        return str(self.remote_ip)


class Limits(Protocol):
    """The server's limits an exchange starts with."""

    max_body_size: int
    body_timeout: float | None


class Connection(Protocol):
    """What an exchange needs of the connection it is answered on (HTTP1Protocol is the one)."""

    transport: asyncio.Transport
    context: Context
    closing: bool
    exchange: Exchange | None

    @property
    def server(self) -> Limits:
        """The server the connection was accepted by."""

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write `data`; the future resolves when the transport can take more."""

    def close(self) -> None:
        """Close after what is already written has been sent."""

    def response_finished(self, exchange: Exchange) -> None:
        """The response is complete: close, or go on to the next request."""

    def drop_timer(self) -> None:
        """Stop timing the connection: its answer is being written."""


class Exchange(httputil.HTTPConnection):
    """One request and its response on a connection: the `request.connection` Tornado's handlers write to."""

    def __init__(self, conn: Connection, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders):
        self.conn = conn
        self.context = conn.context
        self.start_line = start_line
        self.request_headers = headers
        self.max_body_size = conn.server.max_body_size
        self.body_timeout = conn.server.body_timeout
        self.keep_alive = can_keep_alive(start_line, headers)
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
            self.conn.drop_timer()  # nothing is timed while answering, and an answer in parts may last (a stream)
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
