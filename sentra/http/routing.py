"""The route table and its router: which Handler answers a request, chosen on its request line.

A Route is a path template and the handler classes that answer it; the methods each class defines (`get`, `post`,
...) are the path's methods, so its Allow list, its OPTIONS answer, HEAD (wherever GET is) and its 405s all follow
from the table. The Router is a `tornado.routing.Router`: `find_handler` serves Tornado's routing contract, and
`start_request` picks the handler from the request line Sentra's HTTP server has already read, without building a
request object, since a one-line POST and the opening of a stream are Sentra's hot paths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tornado.routing
from tornado import httputil

from sentra.http.exchange import Exchange
from sentra.http.handler import ALLOW_ORDER, Dispatch, Handler, implemented_methods
from sentra.services import Services

# {name}: one path segment; {name:path}: the rest of the path, slashes included (maybe empty).
_PARAMETER = re.compile(r"\{([a-z_]+)(:path)?\}")


class Route:
    """One path of the API: its template (`/api/agents/{agent_id}/logs`, `/{path:path}`) and the handler classes
    that answer its methods, no method answered by two. A route without handlers names paths Sentra does not serve
    (a JSON 404 whatever the method), so that no later route takes them."""

    def __init__(self, template: str, *handlers: type[Handler]) -> None:
        self.template = template
        self.methods: dict[str, type[Handler]] = {}
        for handler in handlers:
            for method in implemented_methods(handler):
                if method in self.methods:
                    raise ValueError(f"{template}: {method} is answered by {self.methods[method].__name__} already")
                self.methods[method] = handler
        self.parameters = [found.group(1) for found in _PARAMETER.finditer(template)]
        answered = set(self.methods)
        if "GET" in answered:
            answered.add("HEAD")
        self.allow = ", ".join(m for m in ALLOW_ORDER if m in answered | {"OPTIONS"}) if handlers else ""
        # What a request of each method gets; any other method (OPTIONS among them) gets `other`.
        self.dispatch = {
            method: Dispatch(handler, method.lower(), self.allow) for method, handler in self.methods.items()
        }
        if "GET" in self.methods:
            self.dispatch["HEAD"] = Dispatch(self.methods["GET"], "get", self.allow)
        self.other = Dispatch(handlers[0] if handlers else Handler, None, self.allow)

    def regex(self) -> str:
        """The template as a regular expression, each parameter an unnamed group, in order."""
        parts = _PARAMETER.split(self.template)
        pattern = []
        for i in range(0, len(parts), 3):
            pattern.append(re.escape(parts[i]))
            if i + 1 < len(parts):
                pattern.append("(.*)" if parts[i + 2] else "([^/]+)")
        return "".join(pattern)

    def __repr__(self) -> str:
        return f"Route({self.template!r}, {', '.join(sorted({h.__name__ for h in self.methods.values()}))})"


_NOT_SERVED = Dispatch(Handler, None, "")


class Router(tornado.routing.Router):
    """Serves the routes, first match first, with one set of services (make_app builds it)."""

    def __init__(self, routes: Sequence[Route], services: Services) -> None:
        self.routes = tuple(routes)
        self.services = services
        # One regex of every route in the table's order: each is its template, a group for each path argument, then an
        # empty group, the last to match, whose number says which route matched. Starting with their text rather than
        # a group, the routes share their leading "/" and the regex engine skips those whose next character differs:
        # 4,800 instructions less to route a viewer file, 240 an ingest POST (callgrind).
        alternatives = []
        self._by_group: dict[int, tuple[Route, tuple[tuple[str, int], ...]]] = {}
        group = 1
        for route in self.routes:
            alternatives.append(f"{route.regex()}()")
            arguments = tuple((name, group + i) for i, name in enumerate(route.parameters))
            group += len(route.parameters)
            self._by_group[group] = (route, arguments)
            group += 1
        self._regex = re.compile("|".join(alternatives))

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        """The handler of the request Sentra's HTTP server has read the request line of."""
        # The handlers answer through Exchange's whole-answer and stream writes: Sentra's server is the one.
        assert isinstance(request_conn, Exchange)
        return self.handler_for(request_conn.start_line, request_conn)

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: object) -> httputil.HTTPMessageDelegate:
        """The handler of `request` (tornado.routing's contract: its headers_received has not been called)."""
        assert request.method is not None and request.uri is not None and isinstance(request.connection, Exchange)
        start_line = httputil.RequestStartLine(request.method, request.uri, request.version)
        return self.handler_for(start_line, request.connection)

    def handler_for(self, start_line: httputil.RequestStartLine, connection: Exchange) -> Handler:
        """A new handler for a request with this request line, on `connection`: the one its path's route has for its
        method, with the path's arguments (percent-encoded); a Handler answering 404 for a path no route has."""
        target = start_line.path
        end = target.find("?")
        found = self._regex.fullmatch(target if end < 0 else target[:end])
        if found is None or found.lastindex is None:
            return Handler(self.services, connection, _NOT_SERVED, {})
        route, groups = self._by_group[found.lastindex]
        dispatch = route.dispatch.get(start_line.method, route.other)
        arguments = {}
        for name, group in groups:  # a loop, not a comprehension: that is a function call (Python 3.11)
            arguments[name] = found[group]
        return dispatch.handler(self.services, connection, dispatch, arguments)
