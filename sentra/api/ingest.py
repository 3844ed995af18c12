"""POST /api/agents/{id}/logs (ingest), answered straight from the HTTP connection without a RequestHandler.

Ingest is Sentra's hot path: an agent may POST one line at a time, thousands of times a second. Tornado's
RequestHandler cycle (routing over every rule, a handler object, a task per request, header objects built and
copied) cost more than parsing and committing the line, so this request is read by an HTTPMessageDelegate of its
own. It keeps the handler's contract: the same checks in the same documented order (who, may they write, whose
agent, how large, then the body), the same error shape, default headers, metrics and access log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping

import tornado.iostream
import tornado.web
from tornado import httputil

from sentra.api.agents import MAX_NAME_LENGTH
from sentra.api.base import (
    DISCARD_ALLOWANCE,
    JSON_TYPE,
    authenticate,
    declared_length,
    error_answer,
    parse_query,
    request_token,
    writer,
)
from sentra.api.direct import path_argument, send_answer
from sentra.auth import Principal
from sentra.errors import ApiError, BadRequest, Forbidden, PayloadTooLarge, TooManyRequests
from sentra.http.access_log import log_access
from sentra.http.parsing import header_value
from sentra.lines import NewLine, check_agent_id, parse_body
from sentra.models import Agent, AppendResult
from sentra.ratelimit.local import RateLimiter
from sentra.storage.appends import AppendJob

app_log = logging.getLogger("tornado.application")


class IngestRequest(httputil.HTTPMessageDelegate):
    """One ingest request: checks on the headers, the body collected up to the limit, then one group commit."""

    start_line: httputil.RequestStartLine
    headers: httputil.HTTPHeaders

    def __init__(
        self, app: tornado.web.Application, conn: httputil.HTTPConnection, path_args: Mapping[str, str]
    ) -> None:
        self.settings = app.settings
        self.config = app.settings["sentra_config"]
        self.conn = conn
        self.agent_part = path_args["agent_id"]
        self.started = time.time()
        self.limit: int = self.config["limits.max_body_size"]
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.answered = False  # from the first byte of the answer on, the rest of the request is dropped
        self.agent_id = ""
        self.principal: Principal | None = None
        self.task: asyncio.Future[None] | None = None  # held, so the commit is not collected while it waits

    # ---- httputil.HTTPMessageDelegate ------------------------------------------------------------

    def headers_received(
        self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine, headers: httputil.HTTPHeaders
    ) -> Awaitable[None] | None:
        """Who, may they write, whose agent, how large: refused here, before any of the body is read."""
        assert isinstance(start_line, httputil.RequestStartLine)
        self.start_line, self.headers = start_line, headers
        try:
            # A chunked body over the limit is read and dropped for a while, so its sender gets a 413
            # rather than a connection reset in the middle of its upload.
            self.conn.set_max_body_size(self.limit + DISCARD_ALLOWANCE)  # type: ignore[attr-defined]
            agent_id = path_argument(self.agent_part, "agent_id")
            principal = writer(authenticate(self.settings["sentra_tokens"], self._token))
            self.agent_id = check_agent_id(agent_id)
            agent = self.settings["sentra_store"].cached_agent(agent_id)
            if agent is None:
                return self._check_stored(principal)
            self._check(principal, agent)
        except Exception as exc:
            self._fail(exc)
        return None

    def data_received(self, chunk: bytes) -> None:
        """Collect the body, dropping it once it is over the limit."""
        if self.answered:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.too_large = True
            self.chunks = []
        elif not self.too_large:
            self.chunks.append(chunk)

    def finish(self) -> None:
        """The whole body is in: parse and commit it, and answer once it is durable."""
        if self.answered:
            return
        if self.settings.get("sentra_rate") is not None:
            self.task = asyncio.ensure_future(self._commit_limited())
            return
        # Without a rate limit nothing here waits before the commit: the request queues its lines at once and is
        # answered from the commit's callback, without a task and its wake-ups (3 us of a one-line POST).
        try:
            committed = self._queue(self._lines())
        except Exception as exc:
            self._fail(exc)
            return
        committed.add_done_callback(self._committed)

    # ---- the request's steps -----------------------------------------------------------------------

    def _token(self) -> str | None:
        return request_token(self.headers, parse_query(self.start_line.path), self.config["auth.cookie_name"])

    async def _check_stored(self, principal: Principal) -> None:
        try:
            self._check(principal, await self.settings["sentra_store"].get_agent(self.agent_id))
        except Exception as exc:
            self._fail(exc)

    def _check(self, principal: Principal, agent: Agent | None) -> None:
        self.principal = principal
        if agent is not None and not principal.may_access(agent.owner, agent.id):
            raise Forbidden(f"agent {self.agent_id!r} belongs to another user", code="not_owner")
        length = declared_length(self.headers)
        if length is not None and length > self.limit:
            raise PayloadTooLarge(f"the body is {length} bytes, above the limit of {self.limit}", code="body_too_large")

    def _lines(self) -> list[NewLine]:
        """The body's lines (BadRequest or PayloadTooLarge if it has none to store)."""
        if self.too_large:
            raise PayloadTooLarge(f"the body is above the limit of {self.limit} bytes", code="body_too_large")
        config = self.config
        lines = parse_body(
            b"".join(self.chunks),
            header_value(self.headers, "Content-Type") or "",
            max_line_size=config["limits.max_line_size"],
            max_lines=config["limits.max_lines_per_request"],
        )
        self.chunks = []
        return lines

    async def _commit_limited(self) -> None:
        """Parse, wait for the rate limit, then commit and answer."""
        try:
            lines = self._lines()
            principal = self.principal
            assert principal is not None  # set by the checks on the headers, which passed
            bucket: RateLimiter = self.settings["sentra_rate"]
            wait = await bucket.take(principal.jti or principal.subject, len(lines))
            if wait:
                retry = max(1, int(wait + 0.999))
                raise TooManyRequests(
                    f"ingest rate above {bucket.rate} lines/s for this token; retry in {retry} s",
                    code="rate_limited",
                    headers={"Retry-After": str(retry)},
                )
            result = await self._queue(lines)
        except Exception as exc:
            self._fail(exc)
            return
        self._succeed(result)

    def _queue(self, lines: list[NewLine]) -> asyncio.Future[AppendResult]:
        """Queue the lines for the next group commit."""
        principal = self.principal
        assert principal is not None  # set by the checks on the headers, which passed
        key = header_value(self.headers, "Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            raise BadRequest("Idempotency-Key must be 1-255 characters", code="invalid_idempotency_key")
        name = next((str(line.fields["agent_name"]) for line in lines if "agent_name" in line.fields), "")
        job = AppendJob(self.agent_id, principal.subject, principal.is_admin, lines, key, name[:MAX_NAME_LENGTH], {})
        return self.settings["sentra_store"].queue_append(job)  # type: ignore[no-any-return]

    def _committed(self, committed: asyncio.Future[AppendResult]) -> None:
        if committed.cancelled():
            return  # the server is stopping: nobody is answered (as when a request's task is cancelled)
        exc = committed.exception()
        if exc is not None:
            self._fail(exc)
        else:
            self._succeed(committed.result())

    def _succeed(self, result: AppendResult) -> None:
        extra = [("Idempotent-Replayed", "true")] if result.replayed else []
        self._answer(200, result.json_text(), extra)

    # ---- answering -------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        """Answer with the error's status and {"error": {"code", "message"}}; log what was not expected."""
        if isinstance(exc, tornado.iostream.StreamClosedError):
            return
        if not isinstance(exc, ApiError):
            app_log.error(
                "Uncaught exception in %s %s", self.start_line.method, self.agent_id or "ingest", exc_info=exc
            )
        self._answer(*error_answer(exc))

    def _answer(self, status: int, body: str, extra: list[tuple[str, str]]) -> None:
        if self.answered:
            return
        self.answered = True
        self.chunks = []
        if status >= 400:
            self.settings["sentra_metrics"].requests_rejected.labels(str(status)).inc()
        now = time.time()
        send_answer(
            self.conn, self.config, self.headers, status, [("Content-Type", JSON_TYPE), *extra], body.encode(), now
        )
        if self.config["server.access_log"]:
            start = self.start_line
            log_access(status, start.method, start.path, self.conn.context.remote_ip, now - self.started)  # type: ignore[attr-defined]
