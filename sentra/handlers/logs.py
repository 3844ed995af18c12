"""POST /api/agents/{id}/logs (ingest) and GET /api/agents/{id}/logs (history)."""

from __future__ import annotations

import tornado.iostream
import tornado.web

from sentra import sse
from sentra.errors import BadRequest, Forbidden, PayloadTooLarge, TooManyRequests
from sentra.handlers.agents import MAX_NAME_LENGTH
from sentra.handlers.base import DISCARD_ALLOWANCE, BaseHandler
from sentra.lines import LEVELS, Line, check_agent_id, parse_body, parse_level
from sentra.models import Agent
from sentra.ratelimit import RateLimiter
from sentra.storage import LineQuery

HISTORY_DEFAULT_LIMIT = 1000
HISTORY_MAX_LIMIT = 10000


def query_from_arguments(handler: BaseHandler) -> LineQuery:
    """The `level` and `q` filters of a history or stream request."""
    level = handler.get_query_argument("level", None)
    try:
        min_level = LEVELS[parse_level(level)] if level else 0
    except ValueError as exc:
        raise BadRequest(f"query parameter 'level': {exc}") from None
    return LineQuery(min_level=min_level, q=handler.get_query_argument("q", "") or "")


class LogsHandler(BaseHandler):
    """Ingest lines into an agent, or read its history."""

    _chunks: list[bytes]
    _size: int
    _too_large: bool

    async def prepare(self) -> None:
        self._chunks, self._size, self._too_large = [], 0, True
        if self.request.method != "POST":
            return
        limit = self.config["limits.max_body_size"]
        # A chunked body over the limit is read and dropped for a while, so its sender gets a 413
        # rather than a connection reset in the middle of its upload.
        self.request.connection.set_max_body_size(limit + DISCARD_ALLOWANCE)  # type: ignore[union-attr]
        # The documented order, before any of the body is read: who, may they write, whose agent.
        principal = self.require_write()
        agent_id = check_agent_id(self.path_kwargs["agent_id"])
        agent = await self.store.get_agent(agent_id)
        if agent is not None and not principal.may_access(agent.owner, agent.id):
            raise Forbidden(f"agent {agent_id!r} belongs to another user", code="not_owner")
        length = self.declared_length()
        if length is not None and length > limit:
            self._reject_too_large(f"the body is {length} bytes, above the limit of {limit}")
        self._too_large = False

    def _reject_too_large(self, message: str) -> None:
        self.metrics.requests_rejected.labels("413").inc()
        raise PayloadTooLarge(message, code="body_too_large")

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.config["limits.max_body_size"]:
            self._too_large = True
            self._chunks = []
        elif not self._too_large:
            self._chunks.append(chunk)

    async def post(self, agent_id: str) -> None:
        """Parse and commit a batch; answer only once it is durable."""
        principal = self.principal
        if self._too_large:
            self._reject_too_large(f"the body is above the limit of {self.config['limits.max_body_size']} bytes")
        lines = parse_body(
            b"".join(self._chunks),
            self.header("Content-Type") or "",
            max_line_size=self.config["limits.max_line_size"],
            max_lines=self.config["limits.max_lines_per_request"],
        )
        bucket: RateLimiter | None = self.settings.get("sentra_rate")
        if bucket is not None:
            wait = await bucket.take(principal.jti or principal.subject, len(lines))
            if wait:
                retry = max(1, int(wait + 0.999))
                raise TooManyRequests(
                    f"ingest rate above {bucket.rate} lines/s for this token; retry in {retry} s",
                    code="rate_limited",
                    headers={"Retry-After": str(retry)},
                )
        key = self.header("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            raise BadRequest("Idempotency-Key must be 1-255 characters", code="invalid_idempotency_key")
        name = next((str(line.fields["agent_name"]) for line in lines if "agent_name" in line.fields), "")[
            :MAX_NAME_LENGTH
        ]
        result = await self.store.append_lines(
            agent_id,
            principal.subject,
            lines,
            may_write_any=principal.is_admin,
            idempotency_key=key,
            name=name,
        )
        if result.replayed:
            self.set_header("Idempotent-Replayed", "true")
        self.write_json(result.to_json())

    async def get(self, agent_id: str) -> None:
        """History: after/before cursors, limit, level, q; JSON, NDJSON or a text download."""
        agent = await self.agent_for(agent_id)
        query = query_from_arguments(self)
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "ndjson", "text"):
            raise BadRequest(f"query parameter 'format' must be json, ndjson or text, not {fmt[:20]!r}")
        asked = self.int_argument("limit", None, minimum=1)
        after = self.int_argument("after")
        before = self.int_argument("before")
        if after is not None and before is not None:
            raise BadRequest("use either 'after' or 'before', not both")
        if fmt != "json" and asked is None and before is None:
            await self._download(agent, after or 0, query, fmt)
            return
        limit = min(asked or HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
        if before is not None:
            lines = await self.store.lines_before(agent, before, limit=limit, query=query)
        else:
            lines = await self.store.lines_after(agent, after or 0, limit=limit, query=query)
        if fmt != "json":
            self._start_download(agent, fmt)
            self.finish(self._render(lines, fmt))
            return
        # Lines may have arrived since `agent` was read: judge "more" against the agent as it is now.
        agent = self.store.cached_agent(agent.id) or agent
        more_after = bool(lines) and lines[-1].seq < agent.last_seq and (before is not None or len(lines) == limit)
        more_before = bool(lines) and before is not None and len(lines) == limit and lines[0].seq > agent.first_seq
        self.write_json(
            {
                "lines": [line.to_json() for line in lines],
                "next_after": lines[-1].seq if more_after else None,
                "next_before": lines[0].seq if more_before else None,
            }
        )

    def _start_download(self, agent: Agent, fmt: str) -> None:
        if fmt == "ndjson":
            self.set_header("Content-Type", "application/x-ndjson; charset=utf-8")
        else:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header(
            "Content-Disposition",
            f'attachment; filename="{agent.id}.{"ndjson" if fmt == "ndjson" else "log"}"',
        )

    @staticmethod
    def _render(lines: list[Line], fmt: str) -> str:
        if fmt == "ndjson":
            # U+2028, U+2029 and U+0085 are escaped as in SSE, so readers that split on them (Python's
            # str.splitlines) still see one record per line.
            return "".join(sse.json_bytes(line.to_json()).decode() + "\n" for line in lines)
        return "".join(line.message + "\n" for line in lines)

    async def _download(self, agent: Agent, after: int, query: LineQuery, fmt: str) -> None:
        """The whole log from `after`, written page by page so memory stays flat."""
        self._start_download(agent, fmt)
        upto = agent.last_seq
        while True:
            lines = await self.store.lines_after(agent, after, upto=upto, limit=HISTORY_MAX_LIMIT, query=query)
            if not lines:
                break
            self.write(self._render(lines, fmt))
            try:
                await self.flush()
            except tornado.iostream.StreamClosedError:
                return  # the client stopped the download
            after = lines[-1].seq
        self.finish()
