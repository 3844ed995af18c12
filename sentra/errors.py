"""Typed API errors: handlers raise them, Handler.fail (sentra.http.handler) renders {"error": {"code", "message"}}."""

from __future__ import annotations


class ApiError(Exception):
    """An error with an HTTP status, a stable machine code and a message that says what was wrong; answered with
    its status and logged by nobody (it is the client's to read)."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = self.status
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    """The request is malformed: bad JSON, a wrong type, an invalid id or parameter."""

    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    """No valid token: missing, malformed, expired, revoked or badly signed."""

    status = 401
    code = "not_authenticated"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        # RFC 6750 3.1: a request that sent no credentials gets a challenge with no error code.
        challenge = 'Bearer realm="sentra"'
        if code not in (None, "not_authenticated"):
            challenge += ', error="invalid_token"'
        super().__init__(message, code=code, headers={"WWW-Authenticate": challenge})


class Forbidden(ApiError):
    """Authenticated, but not the owner of the agent or lacking the scope."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """No such agent or route."""

    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    """The path exists, but does not answer this method; the Allow header names those it does."""

    status = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    """The request conflicts with the agent's state: it exists already, or it has finished."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    """The body or the number of lines is above the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """The body's Content-Type or Content-Encoding is not one the endpoint reads."""

    status = 415
    code = "unsupported_media_type"


class TooManyRequests(ApiError):
    """A rate or connection limit was hit; Retry-After says when to come back."""

    status = 429
    code = "too_many_requests"


class StorageFull(ApiError):
    """The disk is full: nothing was written; retry when space returns."""

    status = 507
    code = "storage_full"


class ServiceUnavailable(ApiError):
    """The database cannot be written right now, or the server is shutting down."""

    status = 503
    code = "unavailable"
