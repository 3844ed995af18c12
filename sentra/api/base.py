"""BaseHandler: typed access to the app's collaborators, authentication, ownership checks, one error shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.escape import parse_qs_bytes
from tornado.httputil import HTTPHeaders, parse_cookie

from sentra.auth import LOCAL_PRINCIPAL, Principal, TokenService
from sentra.config import Config
from sentra.errors import ApiError, BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized
from sentra.http.parsing import header_value
from sentra.lines import check_agent_id
from sentra.metrics import Metrics
from sentra.models import Agent
from sentra.registry import TopicRegistry
from sentra.scopes import SCOPE_READ, SCOPE_WRITE
from sentra.storage.base import Storage

JSON_TYPE = "application/json; charset=utf-8"
MAX_INT_ARGUMENT = 2**63 - 1  # SQLite's largest integer
_DECIMAL = re.compile(r"-?[0-9]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")  # what Tornado's query arguments turn into spaces
MAX_QUERY_FIELDS = 1000  # the fields of a query string, as Tornado's request object limits them
INTERNAL_ERROR = "internal server error; the server logged the details"


# JSON bodies of the agent and session endpoints are small; ingest has its own, configurable limit.
JSON_BODY_LIMIT = 1024 * 1024
# A body over its limit is read and dropped up to this much more, so its sender gets a 413 rather
# than a connection reset in the middle of its upload.
DISCARD_ALLOWANCE = 64 * 1024 * 1024


# What a page on an allowed origin may send, and read beyond the headers every CORS answer shows.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
CORS_EXPOSED_HEADERS = "Location, Retry-After, Idempotent-Replayed, WWW-Authenticate"
# How long a browser may keep a pre-flight's grant: short, so a changed server.cors_origins reaches it soon.
PREFLIGHT_MAX_AGE = 600


def default_headers(config: Config, origin: str | None) -> list[tuple[str, str]]:
    """The headers every answer carries: no sniffing, no referrer, and CORS for an allowed origin."""
    headers = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
    allowed = config["server.cors_origins"]
    if allowed:
        # The answer depends on the Origin, so a cache must not give one origin's answer to another.
        headers.append(("Vary", "Origin"))
        if origin and origin in allowed:
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS),
            ]
    return headers


def preflight_headers(config: Config, origin: str | None, methods: str) -> list[tuple[str, str]]:
    """What a CORS pre-flight from an allowed origin is granted (nothing for any other): `methods`, the request
    headers Sentra reads, and how long to keep the grant."""
    if not origin or origin not in config["server.cors_origins"]:
        return []
    return [
        ("Access-Control-Allow-Methods", methods),
        ("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS),
        ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)),
    ]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an Authorization header (None if none was sent); Unauthorized unless it says 'Bearer <token>'."""
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", code="invalid_token")
    return value.strip()


def parse_query(uri: str) -> dict[str, list[bytes]]:
    """The query arguments of `uri` as Tornado's request object parses them: at most MAX_QUERY_FIELDS fields."""
    query = uri.partition("?")[2]
    if not query:
        return {}
    try:
        return parse_qs_bytes(query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise BadRequest(f"Invalid query string: {exc}") from None


def argument_values(arguments: Mapping[str, list[bytes]], name: str) -> list[str]:
    """Every value of a query argument, read as Tornado reads them: UTF-8, control characters as spaces, stripped."""
    values = []
    for raw in arguments.get(name, ()):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Invalid unicode in {name}: {raw[:40]!r}") from None
        values.append(_CONTROL_CHARS.sub(" ", text).strip())
    return values


def request_token(headers: HTTPHeaders, arguments: Mapping[str, list[bytes]], cookie_name: str) -> str | None:
    """The bearer token from the Authorization header, else the last ?token=, else the viewer's cookie; None if
    none was sent."""
    token = bearer_token(header_value(headers, "Authorization"))
    if token is not None:
        return token
    values = argument_values(arguments, "token")
    if values and values[-1]:
        return values[-1]
    cookie = header_value(headers, "Cookie")
    return (parse_cookie(cookie).get(cookie_name) or None) if cookie else None


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


def writer(principal: Principal) -> Principal:
    """`principal`, if allowed to write logs (and not holding a read-only stream ticket); else Forbidden."""
    principal.require(SCOPE_WRITE)
    if principal.agent is not None:
        raise Forbidden("a stream ticket can only read", code="insufficient_scope")
    return principal


def declared_length(headers: HTTPHeaders) -> int | None:
    """The body size the Content-Length header announces, if it is a plain decimal number."""
    length = header_value(headers, "Content-Length")
    if length is None or not length.isascii() or not length.isdigit():
        return None
    # int() refuses thousands of digits; any length that long is far above every limit anyway.
    return int(length) if len(length) <= 18 else 10**18


def error_json(code: str, message: str) -> str:
    """The body of every error answer."""
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)


def error_answer(exc: BaseException) -> tuple[int, str, list[tuple[str, str]]]:
    """The status, JSON body and extra headers that answer `exc`: its own for an ApiError, else a 500."""
    if isinstance(exc, ApiError):
        return exc.status_code, error_json(exc.code, exc.message), list(exc.headers.items())
    return 500, error_json("internal_error", INTERNAL_ERROR), []


class RequestChecks:
    """What every handler reads the same way, whichever reads its request: the app's collaborators, the caller,
    ownership and integer arguments. The class it is mixed into gives `settings`, `query_argument` and
    `token_from_request`."""

    _principal: Principal | None = None

    if TYPE_CHECKING:
        settings: dict[str, Any]

        def query_argument(self, name: str) -> str | None:
            """The last value of a query argument, or None."""

        def token_from_request(self) -> str | None:
            """The bearer token the request carries, if any."""

    @property
    def config(self) -> Config:
        """The server's settings."""
        return self.settings["sentra_config"]  # type: ignore[no-any-return]

    @property
    def store(self) -> Storage:
        """The SQLite store."""
        return self.settings["sentra_store"]  # type: ignore[no-any-return]

    @property
    def registry(self) -> TopicRegistry:
        """The topic registry of open streams."""
        return self.settings["sentra_registry"]  # type: ignore[no-any-return]

    @property
    def tokens(self) -> TokenService | None:
        """The token verifier, or None when auth.mode is "none"."""
        return self.settings["sentra_tokens"]  # type: ignore[no-any-return]

    @property
    def metrics(self) -> Metrics:
        """Prometheus counters."""
        return self.settings["sentra_metrics"]  # type: ignore[no-any-return]

    # ---- authentication and authorisation -----------------------------------------------------

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
        if not principal.may_access(agent.owner, agent.id):
            raise Forbidden(f"agent {agent_id!r} belongs to another user", code="not_owner")
        return agent

    def require_write(self) -> Principal:
        """The caller, if allowed to write logs (and not holding a read-only stream ticket)."""
        return writer(self.principal)

    def int_argument(self, name: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        """An integer query argument; BadRequest naming it if it is not one."""
        raw = self.query_argument(name)
        if raw is None:
            return default
        # int() would also take " 5", "1_000" and other scripts' digits; the API documents plain decimal.
        if not _DECIMAL.fullmatch(raw):
            raise BadRequest(f"query parameter {name!r} must be an integer, not {raw[:40]!r}")
        if len(raw) > 40:  # no value in range is that long, and int() refuses thousands of digits
            raise BadRequest(f"query parameter {name!r} must be between {minimum} and {MAX_INT_ARGUMENT}")
        value = int(raw)
        if value < minimum:
            raise BadRequest(f"query parameter {name!r} must be at least {minimum}")
        if value > MAX_INT_ARGUMENT:
            raise BadRequest(f"query parameter {name!r} must be at most {MAX_INT_ARGUMENT}")
        return value


@tornado.web.stream_request_body
class BaseHandler(RequestChecks, tornado.web.RequestHandler):
    """Every Sentra handler that Tornado routes: JSON errors, auth in a fixed order, security headers."""

    def header(self, name: str) -> str | None:
        """A request header's value, or None if it was not sent (see header_value)."""
        return header_value(self.request.headers, name)

    def set_default_headers(self) -> None:
        for name, value in default_headers(self.config, self.header("Origin")):
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
        return request_token(self.request.headers, self.request.query_arguments, self.config["auth.cookie_name"])

    # ---- request and response bodies ----------------------------------------------------------

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
        length = declared_length(self.request.headers)
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

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; BadRequest if it is anything else."""
        body = self.body
        if not body:
            return {}
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object", code="invalid_json")
        try:
            # JSON may spell lone UTF-16 surrogates (\ud800), which no UTF-8 column can store.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("the body contains an unpaired UTF-16 surrogate", code="invalid_json") from None
        return value

    def write_json(self, value: Any, status: int = 200) -> None:
        """Send `value` as the JSON response."""
        self.set_status(status)
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(json.dumps(value, ensure_ascii=False))

    def _implements(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(tornado.web.RequestHandler, method)

    def allowed_methods(self) -> list[str]:
        """The methods this path answers (Allow, pre-flights): this handler's own, those of the requests read before
        routing (SentraApplication's direct routes), HEAD wherever GET is, and OPTIONS."""
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
