"""ApiHandler: the Handler every endpoint is, with what every endpoint checks the same way — who the caller is (a
token from the Authorization header, ?token= or the viewer's cookie), what the token allows, and whose agent it is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sentra.auth import LOCAL_PRINCIPAL, Principal, TokenService
from sentra.config import Config
from sentra.errors import BadRequest, Forbidden, Unauthorized
from sentra.http.answers import JSON_TYPE
from sentra.http.handler import Handler
from sentra.line_values import parse_ts
from sentra.metrics import Metrics
from sentra.models import Agent
from sentra.reads import check_owner, checked_agent
from sentra.registry import TopicRegistry
from sentra.scopes import SCOPE_READ, SCOPE_WRITE
from sentra.services import Services
from sentra.storage.base import Storage

__all__ = ["JSON_TYPE", "ApiHandler", "RequestChecks"]


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

    def time_argument(self, name: str) -> float | None:
        """A time query argument, given as a line's ts is: epoch seconds (or ms, µs, ns) or ISO 8601 (UTC if no
        offset); BadRequest naming it otherwise."""
        raw = self.query_argument(name)
        if raw is None:
            return None
        try:
            return parse_ts(raw)
        except ValueError as exc:
            raise BadRequest(f"query parameter {name!r}: {exc}") from None

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
            self._principal = authenticate(self.services.tokens, self.token_from_request)
        return self._principal

    async def agent_for(self, agent_id: str, scope: str = SCOPE_READ) -> Agent:
        """Authenticate, check scope, then the agent's existence and owner, in that order."""
        return await checked_agent(self.store, self.principal, agent_id, scope)

    def check_owner(self, agent: Agent) -> None:
        """Forbidden unless the caller may read and write `agent`."""
        check_owner(self.principal, agent)

    def require_write(self) -> Principal:
        """The caller, if allowed to write logs (and not holding a read-only stream ticket)."""
        principal = self.principal
        principal.require(SCOPE_WRITE)
        if principal.agent is not None:
            raise Forbidden("a stream ticket can only read", code="insufficient_scope")
        return principal


class ApiHandler(RequestChecks, Handler):
    """A Sentra endpoint: the one Handler model (sentra.http.handler) and the checks every endpoint shares."""

    def prepare(self) -> Awaitable[None] | None:
        """With auth.jwks_url, a token signed by a key the identity provider published since Sentra last read its
        keys waits for them to be read again (off the event loop), so that `principal` can then verify it."""
        tokens = self.services.tokens
        if tokens is None or tokens.jwks is None:
            return None
        try:
            token = self.token_from_request()
        except Unauthorized:
            return None  # a malformed Authorization header: `principal` answers it, where the endpoint asks
        return None if token is None else tokens.fetch_keys_for(token)

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
