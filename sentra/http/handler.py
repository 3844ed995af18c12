"""Handler: the one way Sentra answers a request, for every endpoint, hot and cold.

A Handler is the `tornado.httputil.HTTPMessageDelegate` of one request on Sentra's HTTP server (an Exchange is its
connection). The router (sentra.http.routing) makes it from the route table with a Dispatch that says which of its
methods answers. It reads the request (the body up to `body_limit`, a 413 before reading one declared too large),
calls `get`/`post`/`patch`/`put`/`delete(**path_args)`, and answers: HEAD runs `get` and sends only its headers,
OPTIONS is 204 with Allow (and a CORS pre-flight's grant for a listed origin), any other method a JSON 405 naming the
path's methods. Errors raised are rendered here as {"error": {"code", "message"}}, every answer gets the default and
CORS headers here, and every answer is written to the access log here.

Tornado's RequestHandler did this for the JSON endpoints, with a request object, header, argument and transform
objects and a task per request: GET /api/agents/{id} now takes a third of the CPU it took (31-39 us against 89-108 us
per request, in one process on a 2-core EPYC), and an open event stream holds one small object (slots below).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tornado.iostream
from tornado import httputil

from sentra.errors import ApiError, MethodNotAllowed, NotFound, PayloadTooLarge
from sentra.http.access_log import log_access
from sentra.http.answers import (
    JSON_TYPE,
    error_answer,
    preflight_headers,
    set_cookie_value,
    standard_headers,
)
from sentra.http.compression import GzipBody
from sentra.http.exchange import Exchange
from sentra.http.heads import answer_headers, status_line, whole_answer_head
from sentra.http.reading import RequestReading, check_host, path_argument
from sentra.http.representation import Representation

if TYPE_CHECKING:
    from sentra.config import Config
    from sentra.services import Services

app_log = logging.getLogger("tornado.application")

# The methods a handler may define, as `get`, `post`, ...; and the order Allow names a path's methods in.
HANDLER_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
ALLOW_ORDER = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})  # methods whose body means nothing: it is dropped

# JSON bodies of the agent and session endpoints are small; ingest has its own, configurable limit.
JSON_BODY_LIMIT = 1024 * 1024
# A body over its limit is read and dropped up to this much more, so its sender gets a 413 rather than a connection
# reset in the middle of its upload.
DISCARD_ALLOWANCE = 64 * 1024 * 1024

_UNSAFE_VALUE = re.compile(r"[\x00-\x1f]")  # what Tornado refuses in a header value
_NO_CONTENT = ("Content-Type", "Content-Encoding", "Content-Language")  # headers of a body, gone without one
_JSON_CONTENT_TYPE = ("Content-Type", JSON_TYPE)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """What the router found for a request: the class that reads it, the method of that class that answers it
    ("get" for HEAD; None for OPTIONS and methods the path does not answer) and the path's Allow ("" when Sentra
    serves no such path)."""

    handler: type[Handler]
    action: str | None
    allow: str


class Handler(RequestReading, Representation, httputil.HTTPMessageDelegate):
    """One request and its answer. Subclasses define `get`, `post`, `patch`, `put` or `delete` (keyword arguments:
    the path's arguments, decoded), async or plain. They raise ApiErrors for the JSON error answer; an answer not
    ended when the method returns is ended with what it holds (status, headers, empty body), unless the method
    called answer_later."""

    # Thousands of these stay open as event streams: their own state in slots, not in each instance's dict.
    __slots__ = (
        "_chunks",
        "_cookies",
        "_headers",
        "_later",
        "_limit",
        "_refusal",
        "_size",
        "_task",
        "_too_large",
        "config",
        "connection",
        "dispatch",
        "finished",
        "headers_sent",
        "path_args",
        "request_headers",
        "services",
        "start_line",
        "started",
        "status",
    )

    start_line: httputil.RequestStartLine
    request_headers: httputil.HTTPHeaders
    # The gzip body of an answer written in parts (None: as written). A class default, not a slot set in __init__,
    # so the answers that never compress (ingest's, every POST's) pay nothing for it.
    coding: GzipBody | None = None

    def __init__(self, services: Services, connection: Exchange, dispatch: Dispatch, path_args: dict[str, str]) -> None:
        self.services = services
        self.config: Config = services.config  # the server's settings
        self.connection = connection
        self.dispatch = dispatch
        # The path's arguments: as sent (percent-encoded), then decoded in place before the method runs.
        self.path_args = path_args
        self.started = time.time()
        self.status = 200
        self.headers_sent = False
        self.finished = False
        self._headers: dict[str, tuple[str, str]] = {}
        self._cookies: dict[str, str] | None = None  # Set-Cookie values by cookie name
        self._chunks: list[bytes] | None = None  # the body read so far; None when none is taken (or it is too large)
        self._size = 0
        self._limit = 0
        self._too_large = False
        self._task: asyncio.Future[Any] | None = None  # held, so the request is not collected while it runs
        self._later = False
        self._refusal: BaseException | None = None  # an error found before the body, answered once it is read

    # ---- what subclasses may change --------------------------------------------------------------

    def body_limit(self) -> int:
        """The largest request body this handler takes."""
        return min(JSON_BODY_LIMIT, int(self.config["limits.max_body_size"]))

    def prepare(self) -> Awaitable[None] | None:
        """What to wait for before the request is answered, once its path and method are known to be served, before
        before_body and before the body is read. Here: nothing."""
        return None

    def before_body(self) -> Awaitable[None] | None:
        """Checks on the request line and headers, made before the body is read (for methods that carry one): an
        ApiError raised here is answered at once and the body dropped. Here: a declared body over body_limit (413)."""
        length = self.declared_length()
        if length is not None and length > self._limit:
            raise PayloadTooLarge(
                f"the body is {length} bytes, above the limit of {self._limit}", code="body_too_large"
            )
        return None

    def default_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers every answer of this handler carries, errors included (see standard_headers)."""
        return standard_headers(self.config, self.request_headers)

    def on_connection_close(self) -> None:
        """The client went away before the answer ended (streams stop their work, and set watches_close)."""

    # True: on_connection_close is also called when the client goes while the answer is being written.
    watches_close = False

    # Counted in sentra_ingest_rejected when answered with an error status.
    counts_rejections = False

    # ---- the request (and RequestReading's accessors) ---------------------------------------------

    @property
    def body(self) -> bytes:
        """The request body; PayloadTooLarge if it went over body_limit."""
        if self._too_large:
            raise PayloadTooLarge(f"the body is above the limit of {self._limit} bytes", code="body_too_large")
        chunks = self._chunks
        if not chunks:
            return b""
        if len(chunks) != 1:
            chunks[:] = [b"".join(chunks)]
        return chunks[0]

    # ---- the answer ------------------------------------------------------------------------------

    def set_status(self, status: int) -> None:
        """The answer's status (before anything is written)."""
        self.status = status

    def set_header(self, name: str, value: str) -> None:
        """A header of the answer (before anything is written); replaces an earlier value of the same name."""
        if _UNSAFE_VALUE.search(value):
            raise ValueError(f"Unsafe header value {value[:100]!r}")
        self._headers[name.lower()] = (name, value)

    def set_cookie(
        self,
        name: str,
        value: str,
        *,
        path: str = "/",
        max_age: int | None = None,
        expires: float | None = None,
        httponly: bool = False,
        secure: bool = False,
        samesite: str | None = None,
    ) -> None:
        """A cookie for the browser to keep (before anything is written), as Tornado's set_cookie writes it."""
        text = set_cookie_value(
            name,
            value,
            path=path,
            max_age=max_age,
            expires=expires,
            httponly=httponly,
            secure=secure,
            samesite=samesite,
        )
        self._cookies = {**(self._cookies or {}), name: text}

    def clear_cookie(
        self, name: str, *, path: str = "/", httponly: bool = False, secure: bool = False, samesite: str | None = None
    ) -> None:
        """Tell the browser to forget a cookie: empty, expired a year ago."""
        expired = time.time() - 365 * 86400
        self.set_cookie(name, "", path=path, expires=expired, httponly=httponly, secure=secure, samesite=samesite)

    def write(self, data: bytes) -> asyncio.Future[None]:
        """Send part of the body, the headers first (no Content-Length: the body is chunked, or ends with the
        connection); resolves once the connection takes more, StreamClosedError if the client has gone.
        `write(b"")` sends the headers alone. For HEAD, the first write sends the headers and ends the answer, and
        its future fails as if the client had gone, so the handler stops."""
        if self.headers_sent:
            coding = self.coding
            return self.connection.write(data if coding is None else coding.part(data))
        self.headers_sent = True
        method = self.start_line.method
        if self.status == 200 and (method == "GET" or method == "HEAD") and self._gzip_chosen(None):
            self._headers["content-encoding"] = ("Content-Encoding", "gzip")
            if method == "GET":
                coding = self.coding = GzipBody()
                data = coding.part(data)
        start, headers = status_line(self.status), answer_headers(self._fields(), time.time())
        self._headers.clear()  # sent: an event stream need not hold them for its life
        if self.start_line.method != "HEAD":
            return self.connection.write_headers(start, headers, data)
        self.connection.write_headers(start, headers).add_done_callback(_look_at)
        self.end()
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gone.set_exception(tornado.iostream.StreamClosedError())
        gone.add_done_callback(_look_at)
        return gone

    def write_json(self, value: Any, status: int = 200) -> None:
        """Answer with `value` as JSON, and end the answer."""
        self.answer_json(json.dumps(value, ensure_ascii=False).encode("utf-8"), status)

    def answer_json(self, body: bytes, status: int = 200) -> None:
        """Answer with a body already encoded as JSON, and end the answer."""
        self.status = status
        self._headers["content-type"] = _JSON_CONTENT_TYPE  # a value known safe: set_header's check is spared
        self.end(body)

    def end(self, body: bytes = b"", gzipped: Callable[[], bytes] | None = None) -> None:
        """End the answer: the whole of it with `body` if nothing was written yet (a 200 to GET gets an Etag of the
        body unless it has one, is gzip if asked for and worth it, and is a 304 if the client holds it), else after
        what was written. `gzipped` gives the body's gzip, for a body kept compressed. Logged; a no-op once ended."""
        if self.finished:
            return
        self.finished = True
        connection = self.connection
        if self.watches_close:
            connection.set_close_callback(None)
        if self.headers_sent:
            try:
                if self.coding is not None:
                    connection.write(self.coding.end()).add_done_callback(_look_at)
                connection.finish()
            except tornado.iostream.StreamClosedError:
                pass
            self._answered()
            return
        self.headers_sent = True
        method = self.start_line.method
        if self.status == 200 and (method == "GET" or method == "HEAD"):
            body = self._representation(body, gzipped)
        status = self.status
        now = time.time()
        if method != "HEAD":
            head = whole_answer_head(status, self._fields(), now, len(body))
            if head is not None:
                connection.write_whole(head, body)
                self._answered()
                return
        headers = answer_headers(self._fields(), now)
        if status in (204, 304) or 100 <= status < 200:
            for name in _NO_CONTENT:
                headers.pop(name, None)
        else:
            headers["Content-Length"] = str(len(body))  # for HEAD too: the length GET's body has
        try:
            written = connection.write_headers(status_line(status), headers, b"" if method == "HEAD" else body)
            written.add_done_callback(_look_at)
            connection.finish()
        except tornado.iostream.StreamClosedError:
            pass
        self._answered()

    def answer_later(self) -> None:
        """The answer is ended by a callback (with end or fail), not when the method returns: what a plain method
        that waits for a Future calls, so that no task is made for it."""
        self._later = True

    def fail(self, exc: BaseException) -> None:
        """Answer `exc`: its status and {"error": {"code", "message"}} for an ApiError, a 500 for anything else
        (logged with its traceback). After the headers were sent it can only cut the answer off: the client sees it
        end without its last chunk."""
        if self.finished:
            return
        gone = isinstance(exc, tornado.iostream.StreamClosedError)
        if not isinstance(exc, ApiError) and not gone:
            app_log.error("Uncaught exception in %s %s", self.start_line.method, self.path[:200], exc_info=exc)
        if self.headers_sent or gone:
            self.finished = True
            if self.watches_close:
                self.connection.set_close_callback(None)
            self.connection.close()
            self._answered()
            return
        self.status, text, extra = error_answer(exc)
        self._headers = {"content-type": _JSON_CONTENT_TYPE}
        self._cookies = None
        for name, value in extra:
            self.set_header(name, value)
        self.end(text.encode("utf-8"))

    # ---- httputil.HTTPMessageDelegate ------------------------------------------------------------

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        """Check what the request line and headers show (see _check_head) before any of the body is read."""
        assert isinstance(start_line, httputil.RequestStartLine)
        self.start_line, self.request_headers = start_line, headers
        check_host(start_line, headers)
        if self.watches_close:
            self.connection.set_close_callback(self.on_connection_close)
        try:
            checking = self._check_head()
        except Exception as exc:
            self._refuse_before_body(exc)
            return None
        return None if checking is None else self._checked(checking)

    def data_received(self, chunk: bytes) -> None:
        """Collect the body, dropping it once it is over the limit."""
        chunks = self._chunks
        if chunks is None:
            return
        self._size += len(chunk)
        if self._size <= self._limit:
            chunks.append(chunk)
        else:
            self._chunks, self._too_large = None, True

    def finish(self) -> None:
        """The request is read: answer it."""
        if self.finished:
            return
        if self._refusal is not None:
            self.fail(self._refusal)
            return
        action = self.dispatch.action
        if action is None:
            self._answer_without_action()
            return
        try:
            answering = getattr(self, action)(**self.path_args)
        except Exception as exc:
            self.fail(exc)
            return
        if answering is None:
            if not self._later:
                self.end()
            return
        task = self._task = asyncio.ensure_future(answering)
        task.add_done_callback(self._answering_done)

    # ---- the request's life ----------------------------------------------------------------------

    def _check_head(self) -> Awaitable[None] | None:
        """Refuse what the request line and headers show, in Tornado's order: a path Sentra does not serve (404), a
        method no path has (405), a path argument that is not UTF-8 (400); then, for a method the path answers, run
        prepare; then, for a method that carries a body, set its limit and run before_body (or, for a method this
        path does not answer, its 413 check)."""
        dispatch, method = self.dispatch, self.start_line.method
        if not dispatch.allow:
            raise NotFound(f"no such path {self.path[:200]!r}", code="not_found")
        if dispatch.action is None and method not in ALLOW_ORDER:
            raise self._not_allowed()
        path_args = self.path_args
        for name, raw in path_args.items():
            path_args[name] = path_argument(raw, name)
        if method in _BODILESS:
            return None if dispatch.action is None else self.prepare()
        self._limit = self.body_limit()
        # A body over the limit is read and dropped for a while, so its sender gets a 413, not a reset mid-upload.
        self.connection.set_max_body_size(self._limit + DISCARD_ALLOWANCE)
        if dispatch.action is None:
            return Handler.before_body(self)
        self._chunks = []
        preparing = self.prepare()
        return self.before_body() if preparing is None else self._prepared(preparing)

    def _refuse_before_body(self, exc: BaseException) -> None:
        """Answer an error found before the body: at once if a body follows (it is dropped, and the connection
        closes after the answer, since the client may stop sending it), else once the request is read."""
        if self.declared_length() or self.request_headers.get_list("Transfer-Encoding"):
            self.fail(exc)
        else:
            self._refusal = exc

    async def _prepared(self, preparing: Awaitable[None]) -> None:
        await preparing
        checking = self.before_body()
        if checking is not None:
            await checking

    async def _checked(self, checking: Awaitable[None]) -> None:
        try:
            await checking
        except Exception as exc:
            self._refuse_before_body(exc)

    def _answering_done(self, task: asyncio.Future[Any]) -> None:
        self._task = None
        if task.cancelled():
            return  # the server is stopping: nobody is answered
        exc = task.exception()
        if exc is not None:
            self.fail(exc)
        elif not self._later:
            self.end()

    def _answer_without_action(self) -> None:
        """OPTIONS, or a method the path does not answer."""
        allow = self.dispatch.allow
        if self.start_line.method != "OPTIONS":
            self.fail(self._not_allowed())
            return
        self.status = 204
        self.set_header("Allow", allow)
        for name, value in preflight_headers(self.config, self.header("Origin"), allow):
            self.set_header(name, value)
        self.end()

    def _not_allowed(self) -> MethodNotAllowed:
        allow = self.dispatch.allow
        message = f"{self.start_line.method[:20]} is not a method of this path; it answers {allow}"
        return MethodNotAllowed(message, headers={"Allow": allow})

    def _fields(self) -> tuple[tuple[str, str], ...]:
        fields = (*self.default_headers(), *self._headers.values())
        if self._cookies:
            fields += tuple(("Set-Cookie", header) for header in self._cookies.values())
        return fields

    def _answered(self) -> None:
        """The one record of every answer: the access log, and the count of refused ingest requests."""
        status = self.status
        if status >= 400 and self.counts_rejections:
            self.services.metrics.requests_rejected.labels(str(status)).inc()
        if self.config["server.access_log"]:
            start = self.start_line
            remote_ip = self.connection.context.remote_ip
            log_access(status, start.method, start.path, remote_ip, time.time() - self.started)


def implemented_methods(handler: type[Handler]) -> list[str]:
    """The methods `handler` answers itself (those of HANDLER_METHODS it defines)."""
    return [method for method in HANDLER_METHODS if callable(getattr(handler, method.lower(), None))]


def _look_at(future: asyncio.Future[None]) -> None:
    """A write to a client that has gone fails; nobody has to hear of it."""
    if not future.cancelled():
        future.exception()
