"""POST /api/agents/{id}/logs: ingest, Sentra's hot path.

An agent may POST one line at a time, thousands of times a second. The checks come in the documented order (who, may
they write, whose agent, how large) on the headers alone, before any of the body is read. Without a rate limit the
lines are queued for the next group commit as soon as the body is in, and the request is answered from the commit's
callback: no task is made for it (3 us of a one-line POST, bench/run.py's ingest scenario).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from sentra.api.agents import MAX_NAME_LENGTH
from sentra.api.base import ApiHandler
from sentra.api.runcontrol import with_stop
from sentra.attachments import DATA_URL_MARK, Attachment, lines_with_images
from sentra.auth import Principal
from sentra.errors import BadRequest, TooManyRequests
from sentra.http.answers import JSON_TYPE
from sentra.http.handler import Handler
from sentra.lines import NewLines, check_agent_id, parse_body
from sentra.models import Agent, AppendResult
from sentra.ratelimit.local import RateLimiter
from sentra.reads import check_owner
from sentra.storage.appends import AppendJob


async def check_rate(bucket: RateLimiter | None, principal: Principal, lines: int) -> None:
    """TooManyRequests (429, with Retry-After) if `lines` more lines would take the caller's token above
    limits.ingest_rate; nothing without a rate limit."""
    if bucket is None:
        return
    wait = await bucket.take(principal.jti or principal.subject, lines)
    if wait:
        retry = max(1, int(wait + 0.999))
        raise TooManyRequests(
            f"ingest rate above {bucket.rate} lines/s for this token; retry in {retry} s",
            code="rate_limited",
            headers={"Retry-After": str(retry)},
        )


class IngestHandler(ApiHandler):
    """Append the body's lines to an agent (created by its first lines), answering once they are durable."""

    counts_rejections = True
    # Images the body brought as data URLs, stored with their lines (sentra/attachments.py).
    attachments: tuple[Attachment, ...] = ()

    def body_limit(self) -> int:
        """limits.max_body_size: ingest takes the largest bodies."""
        return int(self.config["limits.max_body_size"])

    def before_body(self) -> Awaitable[None] | None:
        """Who, may they write, whose agent, how large: refused here, before any of the body is read."""
        principal = self.require_write()
        agent_id = check_agent_id(self.path_args["agent_id"])
        agent = self.services.store.cached_agent(agent_id)
        if agent is None:
            return self._check_stored(principal, agent_id)
        self._check(principal, agent)
        return None

    def post(self, agent_id: str) -> Awaitable[None] | None:
        """Parse the body and queue its lines for the next group commit; answered once they are committed."""
        if self.services.rate is not None:
            return self._commit_limited(agent_id)
        self._queue(agent_id, self._lines()).add_done_callback(self._committed)
        self.answer_later()
        return None

    # ---- the request's steps -----------------------------------------------------------------------

    async def _check_stored(self, principal: Principal, agent_id: str) -> None:
        self._check(principal, await self.store.get_agent(agent_id))

    def _check(self, principal: Principal, agent: Agent | None) -> None:
        if agent is not None:
            check_owner(principal, agent)
        Handler.before_body(self)  # the declared length

    def _lines(self) -> NewLines:
        """The body's lines (BadRequest or PayloadTooLarge if it has none to store)."""
        config = self.config
        body = self.body
        # One substring scan of the raw body keeps lines without images off the per-field work.
        if DATA_URL_MARK in body:
            lines, self.attachments = lines_with_images(
                body,
                self.header("Content-Type") or "",
                self.path_args["agent_id"],
                max_line_size=config["limits.max_line_size"],
                max_lines=config["limits.max_lines_per_request"],
                max_attachment_size=config["limits.max_attachment_size"],
            )
            return lines
        return parse_body(
            body,
            self.header("Content-Type") or "",
            max_line_size=config["limits.max_line_size"],
            max_lines=config["limits.max_lines_per_request"],
        )

    async def _commit_limited(self, agent_id: str) -> None:
        """Parse, wait for the rate limit, then commit and answer."""
        lines = self._lines()
        await check_rate(self.services.rate, self.principal, len(lines))
        self._succeed(await self._queue(agent_id, lines))

    def _queue(self, agent_id: str, lines: NewLines) -> asyncio.Future[AppendResult]:
        """Queue the lines for the next group commit."""
        principal = self.principal
        key = self.header("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            raise BadRequest("Idempotency-Key must be 1-255 characters", code="invalid_idempotency_key")
        name = next((str(fields["agent_name"]) for fields in lines.fields if "agent_name" in fields), "")
        job = AppendJob(
            agent_id,
            principal.subject,
            principal.is_admin,
            lines,
            key,
            name[:MAX_NAME_LENGTH],
            {},
            attachments=self.attachments,
        )
        return self.services.store.queue_append(job)

    def _committed(self, committed: asyncio.Future[AppendResult]) -> None:
        if committed.cancelled():
            return  # the server is stopping: nobody is answered
        exc = committed.exception()
        if exc is not None:
            self.fail(exc)
        else:
            self._succeed(committed.result())

    def _succeed(self, result: AppendResult) -> None:
        if result.replayed:  # a retry's stored answer says so, after its Content-Type
            self.set_header("Content-Type", JSON_TYPE)
            self.set_header("Idempotent-Replayed", "true")
        stopping = self.services.store.cached_agent(self.path_args["agent_id"])
        self.answer_json(with_stop(result.json_text(), stopping).encode())
