"""SentraApplication: Tornado's Application for the endpoints not on the one handler model yet.

A request the route table (sentra.api.routes) answers goes to its Router's handler, chosen on the request line;
any other goes through Tornado's routing to a RequestHandler, whose OPTIONS and 405 name the route table's methods
of the same path too.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import tornado.web
from tornado import httputil

from sentra.http.exchange import Exchange
from sentra.http.handler import ALLOW_ORDER
from sentra.http.routing import Router


class SentraApplication(tornado.web.Application):
    """Tornado's Application, except that the requests `router` has a handler method for go to it."""

    def __init__(self, router: Router, handlers: list[Any], **settings: Any) -> None:
        super().__init__(handlers, sentra_direct_methods=self.direct_methods, **settings)
        self.router = router
        # What the route table answers, as (method, path template): the OpenAPI document lists these too.
        self.direct_routes = frozenset(
            (method.lower(), route.template) for route in router.routes for method in route.methods
        )

    def direct_methods(self, path: str) -> list[str]:
        """The methods the route table answers on `path` (HEAD included with GET)."""
        return [method for method in ALLOW_ORDER if self.router.dispatch(method, path)[0].action is not None]

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        """A delegate that picks the route table's handler or Tornado's routing once it has seen the request line."""
        return _Chooser(self, server_conn, request_conn)

    def direct_delegate(
        self, start_line: httputil.RequestStartLine, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate | None:
        """The route table's handler of a request, or None for Tornado's routing."""
        dispatch, arguments = self.router.dispatch(start_line.method, start_line.path)
        if dispatch.action is None:
            return None
        assert isinstance(request_conn, Exchange)
        return dispatch.handler(self.router.services, request_conn, dispatch, arguments)


class _Chooser(httputil.HTTPMessageDelegate):
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
