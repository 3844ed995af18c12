"""What every answer shares: the security and CORS headers, a CORS pre-flight's grant, the error body, the Etag
comparison and the Set-Cookie text, each as Tornado's RequestHandler wrote it."""

from __future__ import annotations

import http.cookies
import json
import re
from typing import TYPE_CHECKING

from tornado import httputil

from sentra.errors import ApiError
from sentra.http.parsing import header_value

if TYPE_CHECKING:
    from sentra.config import Config

JSON_TYPE = "application/json; charset=utf-8"
INTERNAL_ERROR = "internal server error; the server logged the details"
# What a page on an allowed origin may send, and read beyond the headers every CORS answer shows.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
CORS_EXPOSED_HEADERS = "Location, Retry-After, Idempotent-Replayed, WWW-Authenticate"
# How long a browser may keep a pre-flight's grant: short, so a changed server.cors_origins reaches it soon.
PREFLIGHT_MAX_AGE = 600

_SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
_ETAGS = re.compile(r'\*|(?:W/)?"[^"]*"')


def standard_headers(config: Config, request_headers: httputil.HTTPHeaders) -> tuple[tuple[str, str], ...]:
    """The headers every answer carries: no sniffing, no referrer, and CORS for a request from an allowed origin."""
    allowed = config["server.cors_origins"]
    if not allowed:
        return _SECURITY_HEADERS  # without reading the Origin: that was 0.3% of a one-line POST (callgrind)
    origin = header_value(request_headers, "Origin")
    # The answer depends on the Origin, so a cache must not give one origin's answer to another.
    if not origin or origin not in allowed:
        return (*_SECURITY_HEADERS, ("Vary", "Origin"))
    return (
        *_SECURITY_HEADERS,
        ("Vary", "Origin"),
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS),
    )


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


def error_json(code: str, message: str) -> str:
    """The body of every error answer."""
    return json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False)


def error_answer(exc: BaseException) -> tuple[int, str, list[tuple[str, str]]]:
    """The status, JSON body and extra headers that answer `exc`: its own for an ApiError, else a 500."""
    if isinstance(exc, ApiError):
        return exc.status_code, error_json(exc.code, exc.message), list(exc.headers.items())
    return 500, error_json("internal_error", INTERNAL_ERROR), []


def etag_matches(etag: str, if_none_match: str | None) -> bool:
    """True if an If-None-Match header names `etag` (weakly, or by "*"), as Tornado compares them."""
    sent = _ETAGS.findall(if_none_match or "")
    if not etag or not sent:
        return False
    if sent[0] == "*":
        return True
    strong = etag.removeprefix("W/")
    return any(candidate.removeprefix("W/") == strong for candidate in sent)


def set_cookie_value(
    name: str,
    value: str,
    *,
    path: str = "/",
    max_age: int | None = None,
    expires: float | None = None,
    httponly: bool = False,
    secure: bool = False,
    samesite: str | None = None,
) -> str:
    """The Set-Cookie header's value for a cookie, as Tornado's RequestHandler.set_cookie writes it."""
    cookies: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    cookies[name] = value
    morsel = cookies[name]
    if expires is not None:
        morsel["expires"] = httputil.format_timestamp(expires)
    morsel["path"] = path
    if max_age:
        morsel["max-age"] = str(int(max_age))
    if httponly:
        morsel["httponly"] = True
    if secure:
        morsel["secure"] = True
    if samesite:
        morsel["samesite"] = samesite
    return morsel.OutputString(None)
