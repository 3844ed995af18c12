"""Reads with `q` on PostgreSQL (sentra.storage.search_reads does the rest); the word index comes next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sentra.lines import Line
from sentra.models import Agent
from sentra.storage.postgres_schema import LINE_COLUMNS, line_from_row
from sentra.storage.words import Terms

Fetch = Callable[..., Awaitable[list[Any]]]


class PgMatchSource:
    """search_reads.MatchSource on PostgreSQL, reading through the store's pool (no index yet: every line is read)."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch

    async def plain_lines(
        self, agent: Agent, first: int, last: int, limit: int, min_level: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` with seqs first..last at `min_level` or above, in seq order."""
        sql = (
            f"SELECT {LINE_COLUMNS} FROM lines WHERE agent_pk = $1 AND seq >= $2 AND seq <= $3 AND level >= $4 "
            f"ORDER BY seq {'DESC' if descending else ''} LIMIT $5"
        )
        rows = await self.fetch(sql, agent.pk, first, last, min_level, limit)
        return [line_from_row(agent.id, row) for row in rows]

    async def indexed_span(self, agent: Agent) -> tuple[int, int] | None:
        """The seqs of `agent` the index holds: none yet."""
        return None

    async def agent_candidates(
        self, agent: Agent, terms: Terms, min_level: int, first: int, last: int, limit: int, descending: bool
    ) -> list[Line]:
        """Never asked: indexed_span gives no seqs."""
        raise AssertionError("no index")
