"""/api/session: the viewer's sign-in. A token posted once becomes an HttpOnly cookie, never a URL."""

from __future__ import annotations

import time
from typing import Any

from sentra.api.base import ApiHandler
from sentra.auth import Principal
from sentra.errors import BadRequest, Unauthorized

# A token without `exp` still gets a cookie that ends: the browser forgets it after this long.
NO_EXPIRY_COOKIE_AGE = 30 * 86400


class SessionHandler(ApiHandler):
    """GET says who is signed in, POST signs in with a token, DELETE signs out."""

    def get(self) -> None:
        """The caller (from the cookie, a header or ?token=); 401 when nobody is signed in."""
        self.write_json(self.describe(self.principal))

    async def post(self) -> None:
        """Verify the token (Authorization header or JSON {"token"}) and keep it in the cookie."""
        if self.tokens is None:
            self.write_json(self.describe(self.principal))
            return
        token = self.posted_token()
        fetching = self.tokens.fetch_keys_for(token)  # a posted token is not seen by prepare
        if fetching is not None:
            await fetching
        principal = self.tokens.verify(token)
        self._principal = principal
        if principal.expires_at is not None:
            max_age = max(1, int(principal.expires_at - time.time()))
        else:
            max_age = NO_EXPIRY_COOKIE_AGE
        self.set_cookie(
            self.config["auth.cookie_name"],
            token,
            path="/",
            max_age=max_age,
            httponly=True,
            samesite="Strict",
            secure=self.protocol == "https",
        )
        self.write_json(self.describe(principal))

    def delete(self) -> None:
        """Forget the cookie; answers 204 whether or not anyone was signed in."""
        self.clear_cookie(self.config["auth.cookie_name"], path="/", httponly=True, samesite="Strict")
        self.set_status(204)

    def posted_token(self) -> str:
        """The token to sign in with: the Authorization header, else a JSON body {"token": "..."}.
        A body is checked either way, so a malformed one is never silently ignored."""
        # A cross-site form cannot send application/json, so no other site can sign a browser in.
        media = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        if media and media != "application/json":
            raise BadRequest('the body must be application/json: {"token": "..."}', code="unsupported_media_type")
        body = self.json_body()
        unknown = sorted(set(body) - {"token"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}; sign-in takes only 'token'")
        token = body.get("token")
        if "token" in body and (not isinstance(token, str) or not token.strip()):
            raise BadRequest("'token' must be a non-empty string", code="invalid_token")
        if self.header("Authorization") is not None:
            header_token = self.token_from_request()
            assert header_token is not None  # token_from_request raises on a malformed header
            return header_token
        if not isinstance(token, str):
            raise Unauthorized(
                'send the token as \'Authorization: Bearer <token>\' or as the JSON body {"token": "..."}',
                code="not_authenticated",
            )
        return token.strip()

    def describe(self, principal: Principal) -> dict[str, Any]:
        """The session as the API shows it."""
        return {
            "subject": principal.subject,
            "scopes": sorted(principal.scopes),
            "auth": "jwt" if self.tokens is not None else "none",
            "expires_at": principal.expires_at,
        }
