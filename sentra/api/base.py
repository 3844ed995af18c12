"""ApiHandler: the Handler every endpoint is, with what every endpoint checks the same way — who the caller is (a
token from the Authorization header, ?token= or the viewer's cookie), what the token allows, and whose agent it is.

BaseHandler is Tornado's RequestHandler with the same checks, for the endpoints not moved onto ApiHandler yet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.httputil import HTTPHeaders, parse_cookie

from sentra.auth import LOCAL_PRINCIPAL, Principal, TokenService
from sentra.config import Config
from sentra.errors import ApiError, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from sentra.http.handler import (
    DISCARD_ALLOWANCE,
    INTERNAL_ERROR,
    JSON_BODY_LIMIT,
    JSON_TYPE,
    Handler,
    error_json,
    preflight_headers,
    standard_headers,
)
from sentra.lines import check_agent_id
from sentra.metrics import Metrics
from sentra.models import Agent
from sentra.registry import TopicRegistry
from sentra.scopes import SCOPE_READ, SCOPE_WRITE
from sentra.services import Services
from sentra.storage.base import Storage

__all__ = ["JSON_TYPE", "ApiHandler", "BaseHandler", "NotFoundHandler", "RequestChecks"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an Authorization header (None if none was sent); Unauthorized unless it says 'Bearer <token>'."""
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", code="invalid_token")
    return value.strip()


def authenticate(tokens: TokenService | None, token: Callable[[], str | None]) -> Principal:
    """The caller: the local user when auth is off, else whoever `token()` proves to be; 401 without a token."""
    if tokens is None:
        return LOCAL_PRINCIPAL
    sent = token()
    if sent is None:
        raise Unauthorized(
            "authentication required: send 'Authorization: Bearer <token>' or ?token=",
            code="not_authenticated",
        )
    return tokens.verify(sent)


class RequestChecks:
    """The app's collaborators, the caller, its scopes and ownership, read the same way by every endpoint. The
    class it is mixed into gives `services` and `token_from_request`."""

    _principal: Principal | None = None

    if TYPE_CHECKING:
        services: Services
        config: Config

        def token_from_request(self) -> str | None:
            """The bearer token the request carries, if any."""

        def query_argument(self, name: str) -> str | None:
            """The last value of a query argument, or None."""

    @property
    def store(self) -> Storage:
        """Storage: agents and their lines."""
        return self.services.store

    @property
    def registry(self) -> TopicRegistry:
        """The topic registry of open streams."""
        return self.services.registry

    @property
    def tokens(self) -> TokenService | None:
        """The token verifier, or None when auth.mode is "none"."""
        return self.services.tokens

    @property
    def metrics(self) -> Metrics:
        """Prometheus counters."""
        return self.services.metrics

    @property
    def principal(self) -> Principal:
        """The authenticated caller; raises Unauthorized (401) if there is none."""
        if self._principal is None:
            self._principal = authenticate(self.tokens, self.token_from_request)
        return self._principal

    async def agent_for(self, agent_id: str, scope: str = SCOPE_READ) -> Agent:
        """Authenticate, check scope, then the agent's existence and owner, in that order."""
        principal = self.principal
        principal.require(scope)
        check_agent_id(agent_id)
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id!r}", code="agent_not_found")
        self.check_owner(agent)
        return agent

    def check_owner(self, agent: Agent) -> None:
        """Forbidden unless the caller may read and write `agent`."""
        if not self.principal.may_access(agent.owner, agent.id):
            raise Forbidden(f"agent {agent.id!r} belongs to another user", code="not_owner")

    def require_write(self) -> Principal:
        """The caller, if allowed to write logs (and not holding a read-only stream ticket)."""
        principal = self.principal
        principal.require(SCOPE_WRITE)
        if principal.agent is not None:
            raise Forbidden("a stream ticket can only read", code="insufficient_scope")
        return principal


class ApiHandler(RequestChecks, Handler):
    """A Sentra endpoint: the one Handler model (sentra.http.handler) and the checks every endpoint shares."""

    def token_from_request(self) -> str | None:
        """The bearer token from the Authorization header, else the last ?token=, else the viewer's cookie; None if
        none was sent."""
        token = bearer_token(self.header("Authorization"))
        if token is not None:
            return token
        values = self.get_query_arguments("token")
        if values and values[-1]:
            return values[-1]
        return self.cookie(self.config["auth.cookie_name"])


# ---- Tornado's RequestHandler, for the endpoints not on ApiHandler yet --------------------------------------------


@tornado.web.stream_request_body
class BaseHandler(RequestChecks, tornado.web.RequestHandler):
    """A Sentra handler that Tornado routes: JSON errors, auth in a fixed order, security headers."""

    @property
    def services(self) -> Services:  # type: ignore[override]
        """The app's collaborators."""
        return self.settings["sentra_services"]  # type: ignore[no-any-return]

    @property
    def config(self) -> Config:  # type: ignore[override]
        """The server's settings."""
        return self.services.config

    def header(self, name: str) -> str | None:
        """A request header's value, or None if it was not sent."""
        values = self.request.headers.get_list(name)
        return ",".join(values) if values else None

    def set_default_headers(self) -> None:
        for name, value in standard_headers(self.config, self.header("Origin")):
            self.set_header(name, value)

    def options(self, *args: str, **kwargs: str) -> None:
        """204 with the path's methods in Allow; a CORS pre-flight from an allowed origin also gets its grant."""
        methods = ", ".join(self.allowed_methods())
        self.set_header("Allow", methods)
        for name, value in preflight_headers(self.config, self.header("Origin"), methods):
            self.set_header(name, value)
        self.set_status(204)

    async def head(self, *args: str, **kwargs: str) -> None:
        """What GET answers, headers only: RequestHandler.flush drops the body, Content-Length stays GET's."""
        if not self._implements("get"):
            raise tornado.web.HTTPError(405)
        answered = self.get(*args, **kwargs)
        if answered is not None:
            await answered

    def check_xsrf_cookie(self) -> None:
        """Sentra takes no form posts; cookie-authenticated writes are guarded by SameSite=Strict."""

    def query_argument(self, name: str) -> str | None:
        """The last value of a query argument, or None."""
        return self.get_query_argument(name, None)

    def token_from_request(self) -> str | None:
        """The bearer token from the Authorization header, ?token= or the viewer's cookie."""
        token = bearer_token(self.header("Authorization"))
        if token is not None:
            return token
        values = self.get_query_arguments("token")
        if values and values[-1]:
            return values[-1]
        cookie = self.header("Cookie")
        return (parse_cookie(cookie).get(self.config["auth.cookie_name"]) or None) if cookie else None

    def int_argument(self, name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        """An integer query argument, read as every ApiHandler reads it (which only calls query_argument)."""
        return Handler.int_argument(self, name, default, minimum=minimum)  # type: ignore[arg-type]

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, read as every ApiHandler reads it (which only reads `body`)."""
        return Handler.json_body(self)  # type: ignore[arg-type]

    _body: bytearray | None = None
    _body_size = 0

    def body_limit(self) -> int:
        """The largest request body this handler takes."""
        return min(JSON_BODY_LIMIT, int(self.config["limits.max_body_size"]))

    async def prepare(self) -> None:
        """Refuse a body over the limit with a JSON 413 before reading it."""
        self._body = bytearray()
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return
        limit = self.body_limit()
        if self.request.connection is not None:
            self.request.connection.set_max_body_size(limit + DISCARD_ALLOWANCE)  # type: ignore[attr-defined]
        length = _declared_length(self.request.headers)
        if length is not None and length > limit:
            raise PayloadTooLarge(f"the body is {length} bytes, above the limit of {limit}", code="body_too_large")

    def data_received(self, chunk: bytes) -> None:
        """Collect the body, dropping it once it is over the limit."""
        self._body_size += len(chunk)
        if self._body is not None and self._body_size <= self.body_limit():
            self._body += chunk
        else:
            self._body = None

    @property
    def body(self) -> bytes:
        """The request body; PayloadTooLarge if it went over the limit."""
        if self._body is None:
            raise PayloadTooLarge(f"the body is above the limit of {self.body_limit()} bytes", code="body_too_large")
        return bytes(self._body)

    def write_json(self, value: Any, status: int = 200) -> None:
        """Send `value` as the JSON response."""
        self.set_status(status)
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(json.dumps(value, ensure_ascii=False))

    def _implements(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(tornado.web.RequestHandler, method)

    def allowed_methods(self) -> list[str]:
        """The methods this path answers (Allow, pre-flights): this handler's own, those of the route table's
        handlers on the same path, HEAD wherever GET is, and OPTIONS."""
        methods = {m for m in ("GET", "POST", "PATCH", "PUT", "DELETE") if self._implements(m.lower())}
        methods.update(self.settings["sentra_direct_methods"](self.request.path))
        if "GET" in methods:
            methods.add("HEAD")
        methods.add("OPTIONS")
        return [m for m in self.SUPPORTED_METHODS if m in methods]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Render every error as {"error": {"code", "message"}}."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, tornado.web.HTTPError):
            code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(status_code, "http_error")
            message = exc.log_message % exc.args if exc.log_message else self._reason
            if status_code == 405:
                allowed = ", ".join(self.allowed_methods())
                self.set_header("Allow", allowed)
                message = f"{(self.request.method or '')[:20]} is not a method of this path; it answers {allowed}"
        else:
            code, message = "internal_error", INTERNAL_ERROR
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(error_json(code, message))


def _declared_length(headers: HTTPHeaders) -> int | None:
    values = headers.get_list("Content-Length")
    length = ",".join(values) if values else None
    if length is None or not length.isascii() or not length.isdigit():
        return None
    return int(length) if len(length) <= 18 else 10**18


class NotFoundHandler(BaseHandler):
    """Any path Sentra does not serve: a JSON 404, whatever the method."""

    async def prepare(self) -> None:
        raise self.not_found()

    def not_found(self) -> NotFound:
        """The error that answers every request here."""
        return NotFound(f"no such path {self.request.path[:200]!r}", code="not_found")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A 404, also for the methods Tornado refuses with 405 before prepare (TRACE, made-up ones): a path that
        does not exist has no methods to name."""
        if status_code == 405:
            self.set_status(404)
            error = self.not_found()
            kwargs["exc_info"] = (type(error), error, None)
        super().write_error(self.get_status(), **kwargs)
