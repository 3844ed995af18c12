"""GET /api/agents/{id}/logs: an agent's history as JSON pages, NDJSON or a text download."""

from __future__ import annotations

import tornado.iostream

from sentra import sse
from sentra.api.base import ApiHandler, RequestChecks
from sentra.errors import BadRequest
from sentra.lines import LEVELS, Line, parse_level
from sentra.models import Agent
from sentra.reads import history_page
from sentra.storage.base import LineQuery

HISTORY_DEFAULT_LIMIT = 1000
HISTORY_MAX_LIMIT = 10000


def query_from_arguments(handler: RequestChecks) -> LineQuery:
    """The `level` and `q` filters of a history or stream request."""
    level = handler.query_argument("level")
    try:
        min_level = LEVELS[parse_level(level)] if level else 0
    except ValueError as exc:
        raise BadRequest(f"query parameter 'level': {exc}") from None
    return LineQuery(min_level=min_level, q=handler.query_argument("q") or "")


class LogsHandler(ApiHandler):
    """An agent's history (GET); its ingest (POST) is IngestHandler's, on the same route."""

    async def get(self, agent_id: str) -> None:
        """History: after/before cursors, limit, level, q; JSON, NDJSON or a text download."""
        agent = await self.agent_for(agent_id)
        query = query_from_arguments(self)
        fmt = self.query_argument("format")
        fmt = fmt if fmt is not None else "json"
        if fmt not in ("json", "ndjson", "text"):
            raise BadRequest(f"query parameter 'format' must be json, ndjson or text, not {fmt[:20]!r}")
        asked = self.int_argument("limit", None, minimum=1)
        after = self.int_argument("after")
        before = self.int_argument("before")
        if fmt != "json" and asked is None and before is None:
            await self._download(agent, after or 0, query, fmt)
            return
        limit = min(asked or HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
        page = await history_page(self.store, agent, after=after, before=before, limit=limit, query=query)
        if fmt != "json":
            self._start_download(agent, fmt)
            self.end(self._render(page.lines, fmt))
            return
        self.write_json(page.to_json())

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
    def _render(lines: list[Line], fmt: str) -> bytes:
        if fmt == "ndjson":
            # U+2028, U+2029 and U+0085 are escaped as in SSE, so readers that split on them (Python's
            # str.splitlines) still see one record per line.
            return b"".join(sse.json_bytes(line.to_json()) + b"\n" for line in lines)
        return "".join(line.message + "\n" for line in lines).encode("utf-8")

    async def _download(self, agent: Agent, after: int, query: LineQuery, fmt: str) -> None:
        """The whole log from `after`, written page by page so memory stays flat: streamed, so without
        Content-Length or Etag, except an empty one, which is answered whole."""
        self._start_download(agent, fmt)
        try:
            if self.method == "HEAD":
                # The download's headers (sent first, so no Content-Length is made up), without reading the log.
                await self.write(b"")
                return
            upto = agent.last_seq
            while True:
                lines = await self.store.lines_after(agent, after, upto=upto, limit=HISTORY_MAX_LIMIT, query=query)
                if not lines:
                    return
                await self.write(self._render(lines, fmt))
                after = lines[-1].seq
        except tornado.iostream.StreamClosedError:
            return  # the client stopped the download (or HEAD's headers are sent)
