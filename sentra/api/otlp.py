"""POST /v1/logs: OpenTelemetry logs in, as OTLP/HTTP defines it (sentra/otlp.py decodes and maps the body).

An agent instrumented with an OpenTelemetry SDK sends here with no code change: its records become lines of one
agent per resource, stored through ingest's path (group commit, live streams, metrics, the other processes).
A request is atomic: every record is stored, or none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from sentra.api.agents import MAX_NAME_LENGTH
from sentra.api.base import ApiHandler
from sentra.api.ingest import check_rate
from sentra.api.runcontrol import STOP_HEADER
from sentra.errors import ServiceUnavailable
from sentra.lines import NewLines
from sentra.otlp import PROTOBUF, SUCCESS, AgentBatch, agent_batches, body_format, decode_request
from sentra.storage.appends import AppendGroup, AppendJob

# Seconds an exporter waits before retrying a 503 (the database cannot be written, or the server is stopping):
# OTLP exporters retry 503 after the Retry-After they are given.
UNAVAILABLE_RETRY_AFTER = "1"


class OtlpLogsHandler(ApiHandler):
    """Store an ExportLogsServiceRequest's log records, answering an ExportLogsServiceResponse once committed."""

    counts_rejections = True
    _media = PROTOBUF
    _compressed = False

    def body_limit(self) -> int:
        """limits.max_body_size, as ingest (and after decompression too)."""
        return int(self.config["limits.max_body_size"])

    def before_body(self) -> Awaitable[None] | None:
        """Who, may they write, in which format, how large: refused here, before any of the body is read."""
        self.require_write()
        self._media, self._compressed = body_format(self.header("Content-Type"), self.header("Content-Encoding"))
        return super().before_body()

    async def post(self) -> None:
        """Decode, map, check every agent's owner and the rate, commit all the lines together, answer."""
        config = self.config
        request = decode_request(self.body, self._media, self._compressed, self.body_limit())
        batches = agent_batches(
            request, max_line_size=config["limits.max_line_size"], max_lines=config["limits.max_lines_per_request"]
        )
        if batches:
            await self._check_owners(batches)
            await check_rate(self.services.rate, self.principal, sum(len(batch.lines) for batch in batches))
            await self._commit(batches)
            self._tell_stops(batches)
        self.set_header("Content-Type", self._media)
        self.end(SUCCESS[self._media])

    def _tell_stops(self, batches: list[AgentBatch]) -> None:
        """Name the request's agents asked to stop in the Sentra-Stop-Requested header: OTLP's answer has no field
        for it."""
        stopping = []
        for batch in batches:
            agent = self.store.cached_agent(batch.agent_id)
            if agent is not None and agent.stop_requested_by is not None:
                stopping.append(batch.agent_id)
        if stopping:
            self.set_header(STOP_HEADER, ", ".join(stopping))

    async def _check_owners(self, batches: list[AgentBatch]) -> None:
        """403 naming the first agent of the request that belongs to another user (the writer checks again)."""
        store = self.store
        for batch in batches:
            agent = store.cached_agent(batch.agent_id) or await store.get_agent(batch.agent_id)
            if agent is not None:
                self.check_owner(agent)

    async def _commit(self, batches: list[AgentBatch]) -> None:
        """Queue one job per agent, as a group when there are several, and wait for their commit."""
        principal = self.principal
        group = AppendGroup(tuple(batch.agent_id for batch in batches)) if len(batches) > 1 else None
        queued = [
            self.store.queue_append(
                AppendJob(
                    batch.agent_id,
                    principal.subject,
                    principal.is_admin,
                    NewLines.of(batch.lines),
                    None,
                    batch.name[:MAX_NAME_LENGTH],
                    batch.labels,
                    group,
                )
            )
            for batch in batches
        ]
        # A group's jobs are answered together, all stored or all refused with the same error.
        for outcome in await asyncio.gather(*queued, return_exceptions=True):
            if isinstance(outcome, ServiceUnavailable):
                outcome.headers.setdefault("Retry-After", UNAVAILABLE_RETRY_AFTER)
            if isinstance(outcome, BaseException):
                raise outcome
