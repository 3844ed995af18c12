"""Requests read straight from the HTTP connection, without Tornado's routing and RequestHandler.

Ingest and the event streams are Sentra's hot paths: an agent may POST thousands of lines a second, a viewer may
open thousands of streams. Tornado's cycle (routing over every rule, a handler object with its header, argument
and UI-module objects, a task per request) cost more than the work itself, and a stream kept all of it for its
whole life. These requests go to delegates of their own, chosen on the request line (SentraApplication), which
keep the handlers' contract: the same checks, the same error shape, default headers and access log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http.client import responses
from typing import Any

import tornado
import tornado.iostream
import tornado.web
from tornado import httputil

from sentra.api.base import (
    JSON_TYPE,
    RequestChecks,
    argument_values,
    default_headers,
    error_answer,
    parse_query,
    request_token,
)
from sentra.config import Config
from sentra.errors import ApiError, BadRequest
from sentra.http.access_log import log_access
from sentra.http.exchange import Exchange
from sentra.http.parsing import header_value

SERVER = f"TornadoServer/{tornado.version}"  # what Tornado's handlers say, so every answer looks alike
app_log = logging.getLogger("tornado.application")
_date: tuple[int, str] = (0, "")

# A delegate for one request: made with the application, the request's connection and the path's arguments.
DirectFactory = Callable[
    [tornado.web.Application, httputil.HTTPConnection, Mapping[str, str]], httputil.HTTPMessageDelegate
]


def date_header(now: float) -> str:
    """The Date header for `now`, formatted once a second."""
    global _date
    second = int(now)
    if _date[0] != second:
        _date = (second, httputil.format_timestamp(second))
    return _date[1]


def answer_headers(config: Config, request_headers: httputil.HTTPHeaders, now: float) -> httputil.HTTPHeaders:
    """The headers every answer starts with: Server, Date, and the security and CORS headers."""
    headers = httputil.HTTPHeaders()
    headers["Server"] = SERVER
    headers["Date"] = date_header(now)
    for name, value in default_headers(config, header_value(request_headers, "Origin")):
        headers[name] = value
    return headers


def send_answer(
    conn: httputil.HTTPConnection,
    config: Config,
    request_headers: httputil.HTTPHeaders,
    status: int,
    fields: Sequence[tuple[str, str]],
    body: bytes,
    now: float,
) -> None:
    """Send a whole answer with answer_headers, then `fields`, and end the exchange (as write_answer does).

    The head is rendered once for each status and set of headers and sent as bytes with that second's Date and
    the body's length: building HTTPHeaders and writing them out line by line cost a tenth of a one-line POST.
    """
    head = _rendered_head(status, (*default_headers(config, header_value(request_headers, "Origin")), *fields))
    if head is None or not isinstance(conn, Exchange) or is_head(conn):
        headers = answer_headers(config, request_headers, now)
        for name, value in fields:
            headers[name] = value
        write_answer(conn, status, headers, body)
        return
    before_date, after_date = head
    conn.write_whole(b"%b%b%b%d\r\n" % (before_date, date_header(now).encode(), after_date, len(body)), body)


@functools.lru_cache(maxsize=64)
def _rendered_head(status: int, fields: tuple[tuple[str, str], ...]) -> tuple[bytes, bytes] | None:
    """The head write_answer sends for these headers after Server and Date, in two parts: up to the Date value,
    and from after it to "Content-Length: ". None when write_answer must send it: a status without a body, a
    header the connection sets itself, or a value it would refuse."""
    if status in (204, 304) or 100 <= status < 200:
        return None
    headers = httputil.HTTPHeaders()
    headers["Server"] = SERVER
    for name, value in fields:
        headers[name] = value
    if any(name in headers for name in ("Date", "Content-Length", "Transfer-Encoding", "Connection")):
        return None
    lines = [f"HTTP/1.1 {status} {responses.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers.get_all())
    if any("\r" in line or "\n" in line for line in lines):
        return None
    try:
        return "\r\n".join(lines[:2]).encode("latin1") + b"\r\nDate: ", "".join(
            f"\r\n{line}" for line in lines[2:]
        ).encode("latin1") + b"\r\nContent-Length: "
    except UnicodeEncodeError:
        return None


def write_answer(conn: httputil.HTTPConnection, status: int, headers: httputil.HTTPHeaders, body: bytes) -> None:
    """Send a whole answer and end the exchange (the headers alone for HEAD, as HTTP says: Content-Length is the
    body's GET would have); a client that has gone is no error."""
    if status not in (204, 304):
        headers["Content-Length"] = str(len(body))
    if is_head(conn):
        body = b""
    try:
        written = conn.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", status, responses.get(status, "Unknown")), headers, body
        )
        written.add_done_callback(_look_at)
        conn.finish()
    except tornado.iostream.StreamClosedError:
        pass


def is_head(conn: httputil.HTTPConnection) -> bool:
    """True if the exchange answers a HEAD request (headers only)."""
    return isinstance(conn, Exchange) and conn.start_line.method == "HEAD"


def path_argument(raw: str, name: str) -> str:
    """A path argument as Tornado hands it to a handler: percent-decoded, then read as UTF-8."""
    data = urllib.parse.unquote_to_bytes(raw)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"Invalid unicode in {name}: {data[:40]!r}") from None


def _look_at(future: asyncio.Future[None]) -> None:
    """A write to a client that has gone fails; nobody has to hear of it."""
    if not future.cancelled():
        future.exception()


class DirectHandler(RequestChecks, httputil.HTTPMessageDelegate):
    """A GET (or HEAD) answered without a RequestHandler: `get(*path_args)` runs once the request is read, raises
    ApiErrors for the usual JSON error answer, and writes its body with `write` (the headers go with the first
    write). A HEAD runs the same `get`, and its answer ends with the headers of that first write."""

    start_line: httputil.RequestStartLine
    request_headers: httputil.HTTPHeaders

    def __init__(
        self, app: tornado.web.Application, conn: httputil.HTTPConnection, path_args: Mapping[str, str]
    ) -> None:
        assert isinstance(conn, Exchange)  # Sentra's HTTP server is the only one that serves the app
        self.settings = app.settings
        self.connection = conn
        self.path_args = path_args
        self.started = time.time()
        self.status = 200
        self.extra_headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.finished = False
        self._arguments: dict[str, list[bytes]] | None = None
        self._task: asyncio.Future[None] | None = None  # held, so the request is not collected while it runs

    async def get(self, *args: Any, **path_args: Any) -> None:
        """Answer the request (subclasses)."""
        raise NotImplementedError

    def on_connection_close(self) -> None:
        """The client went away before the answer ended (subclasses stop their work)."""

    # ---- httputil.HTTPMessageDelegate ------------------------------------------------------------

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.start_line, self.request_headers = start_line, headers
        self.connection.set_close_callback(self.on_connection_close)
        return None

    def data_received(self, chunk: bytes) -> None:
        """A GET's body means nothing: dropped."""

    def finish(self) -> None:
        """The request is read: answer it."""
        self._task = asyncio.ensure_future(self._execute())

    # ---- what the handlers use -------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """A request header's value, or None if it was not sent (see header_value)."""
        return header_value(self.request_headers, name)

    @property
    def arguments(self) -> dict[str, list[bytes]]:
        """The query arguments, parsed on first use (BadRequest past Tornado's limit of fields)."""
        if self._arguments is None:
            self._arguments = parse_query(self.start_line.path)
        return self._arguments

    def token_from_request(self) -> str | None:
        """The bearer token from the Authorization header, ?token= or the viewer's cookie."""
        return request_token(self.request_headers, self.arguments, self.config["auth.cookie_name"])

    def get_query_arguments(self, name: str) -> list[str]:
        """Every value of a query argument (see argument_values)."""
        return argument_values(self.arguments, name)

    def query_argument(self, name: str) -> str | None:
        """The last value of a query argument, or None."""
        values = self.get_query_arguments(name)
        return values[-1] if values else None

    def set_status(self, status: int) -> None:
        """The answer's status (before anything is written)."""
        self.status = status

    def set_header(self, name: str, value: str) -> None:
        """A header of the answer (before anything is written)."""
        self.extra_headers.append((name, value))

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Send part of the body, the headers first; resolves once the connection takes more (StreamClosedError
        if the client has gone)."""
        if self.headers_sent:
            return self.connection.write(data)
        self.headers_sent = True
        start = httputil.ResponseStartLine("HTTP/1.1", self.status, responses.get(self.status, "Unknown"))
        if not is_head(self.connection):
            return self.connection.write_headers(start, self._answer_headers(), data)
        # HEAD: the headers GET sends, and the answer ends; the handler stops as if its client had gone.
        self.connection.write_headers(start, self._answer_headers()).add_done_callback(_look_at)
        self.end()
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.set_exception(tornado.iostream.StreamClosedError())
        gone.add_done_callback(_look_at)
        return gone

    def end(self, body: bytes = b"") -> None:
        """End the answer (the whole of it, with `body`, if nothing was written yet) and log it."""
        if self.finished:
            return
        self.finished = True
        self.connection.set_close_callback(None)
        if not self.headers_sent:
            self.headers_sent = True
            write_answer(self.connection, self.status, self._answer_headers(), body)
        else:
            try:
                self.connection.finish()
            except tornado.iostream.StreamClosedError:
                pass
        self._log()

    # ---- the request's life ----------------------------------------------------------------------

    async def _execute(self) -> None:
        try:
            await self.get(**{name: path_argument(raw, name) for name, raw in self.path_args.items()})
        except Exception as exc:
            if not isinstance(exc, ApiError):
                path = self.start_line.path.partition("?")[0][:200]
                app_log.error("Uncaught exception in %s %s", self.start_line.method, path, exc_info=exc)
            if self.headers_sent:
                # Too late for an error answer: the client sees the stream break off without its last chunk.
                self.finished = True
                self.connection.set_close_callback(None)
                self.connection.close()
                self._log()
                return
            self.status, body, extra = error_answer(exc)
            self.extra_headers = [("Content-Type", JSON_TYPE), *extra]
            self.end(body.encode("utf-8"))
            return
        self.end()

    def _answer_headers(self) -> httputil.HTTPHeaders:
        headers = answer_headers(self.config, self.request_headers, time.time())
        for name, value in self.extra_headers:
            headers[name] = value
        return headers

    def _log(self) -> None:
        if self.config["server.access_log"]:
            remote_ip = self.connection.context.remote_ip
            log_access(self.status, self.start_line.method, self.start_line.path, remote_ip, time.time() - self.started)


class SentraApplication(tornado.web.Application):
    """Tornado's Application, except that the requests of `direct` (method, path template, delegate) go straight
    to their delegates instead of through the routing table; HEAD goes where GET does."""

    def __init__(self, direct: Sequence[tuple[str, str, DirectFactory]], handlers: list[Any], **settings: Any) -> None:
        # The routed handlers name these methods too when they answer OPTIONS or 405 on the same paths.
        super().__init__(handlers, sentra_direct_methods=self.direct_methods, **settings)
        # What this application answers itself, as (method, path template): the OpenAPI document lists these too.
        self.direct_routes = frozenset((method, template) for method, template, _ in direct)
        self._direct: dict[str, list[tuple[re.Pattern[str], DirectFactory]]] = {}
        for method, template, factory in direct:
            for verb in ("GET", "HEAD") if method.upper() == "GET" else (method.upper(),):
                self._direct.setdefault(verb, []).append((_template_regex(template), factory))

    def direct_methods(self, path: str) -> list[str]:
        """The methods whose requests on `path` are answered before routing (HEAD included with GET)."""
        return [method for method, routes in self._direct.items() if any(r.fullmatch(path) for r, _ in routes)]

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        """A delegate that picks a direct delegate or Tornado's routing once it has seen the request line."""
        return _Router(self, server_conn, request_conn)

    def direct_delegate(
        self, start_line: httputil.RequestStartLine, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate | None:
        """The delegate of a request answered directly, or None for the routing table."""
        routes = self._direct.get(start_line.method)
        if routes is None:
            return None
        path = start_line.path.partition("?")[0]
        for regex, factory in routes:
            found = regex.fullmatch(path)
            if found is not None:
                return factory(self, request_conn, found.groupdict())
        return None


def _template_regex(template: str) -> re.Pattern[str]:
    """`/api/agents/{agent_id}/logs` as a regex with a named group for each path argument."""
    parts = re.split(r"\{([a-z_]+)\}", template)
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)))


class _Router(httputil.HTTPMessageDelegate):
    """Chooses, on the request line, who reads the request; then passes every call on to it."""

    __slots__ = ("app", "request_conn", "server_conn", "target")

    def __init__(self, app: SentraApplication, server_conn: object, request_conn: httputil.HTTPConnection) -> None:
        self.app = app
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.target: httputil.HTTPMessageDelegate | None = None

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.target = self.app.direct_delegate(start_line, self.request_conn)
        if self.target is None:
            self.target = tornado.web.Application.start_request(self.app, self.server_conn, self.request_conn)
        return self.target.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        assert self.target is not None
        return self.target.data_received(chunk)

    def finish(self) -> None:
        assert self.target is not None
        self.target.finish()

    def on_connection_close(self) -> None:
        if self.target is not None:
            self.target.on_connection_close()
