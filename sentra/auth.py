"""Tokens: the signing key, creating and verifying JWTs, scopes and the revocation list.

An identity provider's tokens are checked against its PEM public key (auth.public_key_file) or the keys it publishes
at its JWKS URL (auth.jwks_url, sentra.jwks)."""

from __future__ import annotations

import getpass
import os
import secrets
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from sentra.config import Config, ConfigError, parse_duration
from sentra.errors import Forbidden, Unauthorized
from sentra.jwks import ProviderKeys
from sentra.scopes import ALL_SCOPES, SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE

LOCAL_USER = "local"
JWT_LEEWAY = 5  # seconds of clock skew forgiven on exp/nbf
VERIFIED_TTL = 300.0  # a verified token is re-checked at least this often
VERIFIED_MAX = 10_000
MIN_SECRET_LENGTH = 32
SHARE_TYPE = "share"  # the `typ` claim of a share link's token (sentra.api.runcontrol)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the subject, the scopes granted and, for tickets, the one agent allowed."""

    subject: str
    scopes: frozenset[str]
    jti: str | None = None
    expires_at: float | None = None
    agent: str | None = None
    agent_owner: str | None = None
    parent_jti: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        """Admins read and write every agent."""
        return SCOPE_ADMIN in self.scopes

    def require(self, scope: str) -> None:
        """Raise Forbidden unless the token carries `scope` (admin carries all)."""
        if scope not in self.scopes and not self.is_admin:
            raise Forbidden(f"this token lacks the {scope!r} scope", code="insufficient_scope")

    def may_access(self, owner: str, agent_id: str) -> bool:
        """True if this caller owns the agent (or is admin) and, for a ticket, it is the ticket's agent."""
        if self.agent is not None:
            # A ticket is minted only after its parent token was checked against this agent's owner; the
            # owner it names keeps it from reading a new agent that reuses the id of a deleted one.
            return self.agent == agent_id and (self.agent_owner is None or self.agent_owner == owner)
        return self.is_admin or owner == self.subject


def secret_file_for(db_path: Path) -> Path:
    """Where the generated HS256 secret lives: next to the database."""
    return db_path.with_name(db_path.name + ".secret")


def load_or_create_secret(config: Config) -> str:
    """The configured HS256 secret, or one generated on first start into a 0600 file next to the DB."""
    if config["auth.jwt_secret"]:
        return str(config["auth.jwt_secret"])
    path = secret_file_for(config.db_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process started at the same moment and wrote it: read theirs
        else:
            secret = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret + "\n")
            return secret
    stored = path.read_text().strip()
    if len(stored) < MIN_SECRET_LENGTH:
        # An empty or truncated file would let anyone sign tokens with a guessable key.
        raise OSError(f"{path} holds no usable secret; delete it to have a new one generated")
    return stored


class TokenService:
    """Signs Sentra's own tokens and verifies every incoming one against the key and revocation list."""

    def __init__(self, config: Config) -> None:
        self.algorithm: str = config["auth.algorithm"]
        self.subject_claim: str = config["auth.subject_claim"]
        self.audience: str = config["auth.audience"]
        self.ticket_ttl: float = config["auth.ticket_ttl"]
        self.revoked: set[str] = set()
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._secret: str | None = None
        self.jwks: ProviderKeys | None = None  # the identity provider's keys, with auth.jwks_url
        if self.algorithm not in jwt.algorithms.get_default_algorithms():
            raise ConfigError(
                f"auth.algorithm {self.algorithm} needs the cryptography package, which this installation "
                "does not carry (sentra.pyz has none); install Sentra with pip"
            )
        if self.algorithm.startswith("HS"):
            self._secret = load_or_create_secret(config)
            self._verify_key: Any = self._secret
        elif config["auth.jwks_url"]:
            self.jwks = ProviderKeys(config["auth.jwks_url"])
            self._verify_key = None  # each token's own key, by its kid
        else:
            self._verify_key = Path(config["auth.public_key_file"]).read_text()

    @property
    def can_sign(self) -> bool:
        """True when Sentra holds the signing key (HS*), so it can mint tokens and tickets."""
        return self._secret is not None

    def create(
        self,
        subject: str,
        scopes: list[str] | None = None,
        ttl: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed token for `subject`; no `scopes` means read+write on its own agents."""
        if self._secret is None:
            raise Forbidden("this server verifies tokens from an identity provider and cannot mint its own")
        now = int(time.time())
        claims: dict[str, Any] = {self.subject_claim: subject, "iat": now, "jti": uuid.uuid4().hex}
        if scopes:
            unknown = [s for s in scopes if s not in ALL_SCOPES]
            if unknown:
                raise ValueError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(ALL_SCOPES)}")
            claims["scope"] = " ".join(scopes)
        if ttl:
            claims["exp"] = now + int(ttl)
        if self.audience:
            claims["aud"] = self.audience
        claims.update(extra or {})
        return jwt.encode(claims, self._secret, algorithm=self.algorithm)

    def create_ticket(self, parent: Principal, agent_id: str, owner: str) -> tuple[str, float]:
        """A short-lived read-only token for one agent (of `owner`), tied to the caller's own token."""
        extra: dict[str, Any] = {"agent": agent_id, "aown": owner, "typ": "ticket"}
        if parent.jti:
            extra["pjti"] = parent.jti
        if parent.expires_at:
            extra["pexp"] = parent.expires_at
        token = self.create(parent.subject, [SCOPE_READ], self.ticket_ttl, extra)
        return token, time.time() + self.ticket_ttl

    def create_share(self, agent_id: str, owner: str, ttl: float) -> tuple[str, str, float]:
        """A read-only token for one agent (of `owner`) that lasts `ttl` seconds: (token, its id, expires_at). Its
        subject is "share:<id>", so it owns nothing; its id is what revoking the link revokes."""
        share_id = "sh_" + uuid.uuid4().hex
        extra: dict[str, Any] = {"agent": agent_id, "aown": owner, "typ": SHARE_TYPE, "jti": share_id}
        token = self.create(f"share:{share_id}", [SCOPE_READ], ttl, extra)
        return token, share_id, float(jwt.decode(token, options={"verify_signature": False})["exp"])

    def verify(self, token: str) -> Principal:
        """The caller behind `token`; raises Unauthorized for anything not valid right now."""
        # Checking a signature costs more than the rest of a small ingest request: remember good tokens
        # until they expire (revocation is still checked on every use).
        cached = self._verified.get(token)
        now = time.time()
        if cached is None or cached[1] < now:
            principal = self._decode(token)
            expires = principal.claims.get("exp")
            until = float(expires) + JWT_LEEWAY if isinstance(expires, int | float) else now + VERIFIED_TTL
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.clear()
            self._verified[token] = (principal, min(until, now + VERIFIED_TTL))
        else:
            principal = cached[0]
        if (principal.jti and principal.jti in self.revoked) or (
            principal.parent_jti and principal.parent_jti in self.revoked
        ):
            raise Unauthorized("the token has been revoked", code="token_revoked")
        return principal

    def fetch_keys_for(self, token: str) -> Awaitable[None] | None:
        """What to wait for before `token` can be verified: with auth.jwks_url, a fetch of the identity provider's
        keys when the token names one not held yet (at most one every 30 s, sentra.jwks); else None."""
        jwks = self.jwks
        if jwks is None or token in self._verified:
            return None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            return None  # verify says what is wrong with it
        return jwks.fetch_for(kid) if isinstance(kid, str) and kid else None

    def _provider_key(self, jwks: ProviderKeys, token: str) -> jwt.PyJWK:
        """The identity provider's key that signed `token`, by the token's kid; Unauthorized if it has none."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}", code="invalid_token") from None
        if not isinstance(kid, str) or not kid:
            raise Unauthorized(
                "the token names no signing key: an identity provider's tokens carry a 'kid' header",
                code="invalid_token",
            )
        key = jwks.key(kid)
        if key is None:
            raise Unauthorized(
                f"the token is signed by a key the identity provider does not publish (kid {kid[:64]!r})",
                code="invalid_token",
            )
        return key

    def _decode(self, token: str) -> Principal:
        """Check the signature and claims of `token`."""
        key = self._verify_key if self.jwks is None else self._provider_key(self.jwks, token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience or None,
                options={"require": [], "verify_aud": bool(self.audience)},
                leeway=JWT_LEEWAY,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet", code="invalid_token") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature is not valid", code="invalid_token") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}", code="invalid_token") from None
        subject = claims.get(self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthorized(f"the token has no {self.subject_claim!r} claim", code="invalid_token")
        jti = claims.get("jti") if isinstance(claims.get("jti"), str) else None
        parent_jti = claims.get("pjti") if isinstance(claims.get("pjti"), str) else None
        scopes = _scopes_of(claims.get("scope"))
        expiries = [float(v) for v in (claims.get("exp"), claims.get("pexp")) if isinstance(v, int | float)]
        kind = claims.get("typ")
        agent = claims.get("agent") if kind in ("ticket", SHARE_TYPE) else None
        return Principal(
            subject=subject,
            scopes=scopes,
            jti=jti,
            # A ticket only opens a stream: the stream then lives as long as the token that asked for it.
            expires_at=(float(claims["pexp"]) if "pexp" in claims else None)
            if agent is not None and kind == "ticket"
            else (min(expiries) if expiries else None),
            agent=agent if isinstance(agent, str) else None,
            agent_owner=claims.get("aown") if isinstance(claims.get("aown"), str) else None,
            parent_jti=parent_jti,
            claims=claims,
        )


def _scopes_of(scope: Any) -> frozenset[str]:
    """The scopes a `scope` claim grants: space-separated (RFC 8693) or, as some providers write it, a list.
    No claim at all means read+write on one's own agents."""
    if scope is None:
        return frozenset({SCOPE_READ, SCOPE_WRITE})
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list) and all(isinstance(item, str) for item in scope):
        return frozenset(scope)
    # Granting the default here would turn a restricted token in an unexpected shape into a full one.
    raise Unauthorized("the token's 'scope' claim must be a space-separated string", code="invalid_token")


LOCAL_PRINCIPAL = Principal(subject=LOCAL_USER, scopes=frozenset({SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN}))


def local_user(config: Config) -> str:
    """Who a local install acts for: the user of the token Sentra prints at start-up (whoever runs it), or
    'local' with auth off."""
    if not config.auth_enabled:
        return LOCAL_USER
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # A container's user id may have no name (no $USER, no passwd entry): fall back rather than fail to start.
        return LOCAL_USER


def parse_ttl(text: str | None) -> float | None:
    """A token lifetime from the command line ("30d", "12h"); None or "never" for no expiry."""
    if text is None or text == "never":
        return None
    return parse_duration(text)
