"""Reads with `q`, the same on every backend: the index proposes lines holding every word, the rule
(sentra.storage.words) decides, and lines the index does not hold yet (the last moment's, or those of a background
build still under way) are read in order and tested one by one."""

from __future__ import annotations

from typing import Protocol

from sentra.lines import Line
from sentra.models import Agent
from sentra.storage.base import LineQuery, SearchQuery
from sentra.storage.words import Terms

# Lines read at once where the index cannot help, each then tested by the rule.
SCAN_LINES = 1000
# Beyond the lines still wanted, the index is asked for this many more, for the few the rule turns down (a phrase
# whose words are all in a line, but apart).
SLACK = 16
LAST_SEQ = 1 << 62


class MatchSource(Protocol):
    """What a backend offers these reads."""

    async def plain_lines(
        self, agent: Agent, first: int, last: int, limit: int, min_level: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` with seqs first..last at `min_level` or above, in seq order."""

    async def indexed_span(self, agent: Agent) -> tuple[int, int] | None:
        """The seqs of `agent` the index holds (low, high), or None (no index, or none of its lines yet)."""

    async def agent_candidates(
        self, agent: Agent, terms: Terms, min_level: int, first: int, last: int, limit: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` (seqs first..last, `min_level` or above) that hold every word of `terms`,
        in seq order."""


class SearchSource(Protocol):
    """A backend's index, asked across agents."""

    async def search_candidates(self, query: SearchQuery, before: int | None, limit: int) -> list[tuple[int, Line]]:
        """Up to `limit` lines with ids below `before` holding every word and passing every filter, newest first."""


async def matching_lines(
    source: MatchSource, agent: Agent, query: LineQuery, first: int, last: int, limit: int, *, descending: bool
) -> list[Line]:
    """Up to `limit` lines of `agent` with seqs first..last that match `query`, in seq order (newest first if
    `descending`)."""
    span = await source.indexed_span(agent)
    if span is None:
        parts = [(first, last, False)]
    else:
        low, high = span
        parts = [(first, min(last, low - 1), False), (max(first, low), min(last, high), True)]
        parts.append((max(first, high + 1), last, False))
    if descending:
        parts.reverse()
    found: list[Line] = []
    for start, end, indexed in parts:
        extra = SLACK
        while start <= end and len(found) < limit:
            wanted = limit - len(found)
            if indexed:
                size = wanted + extra
                extra *= 2  # the rule turned many down: ask for more at once
                lines = await source.agent_candidates(agent, query.terms, query.min_level, start, end, size, descending)
            else:
                size = SCAN_LINES
                lines = await source.plain_lines(agent, start, end, size, query.min_level, descending)
            found.extend([line for line in lines if query.matches(line)][:wanted])
            if len(lines) < size:
                break
            if descending:
                end = lines[-1].seq - 1
            else:
                start = lines[-1].seq + 1
    return found


async def search_matching(
    source: SearchSource, query: SearchQuery, before: int | None, limit: int
) -> list[tuple[int, Line]]:
    """Up to `limit` lines matching `query` with ids below `before`, newest first, with their ids."""
    found: list[tuple[int, Line]] = []
    extra = SLACK
    while len(found) < limit:
        wanted = limit - len(found)
        size = wanted + extra
        extra *= 2  # the rule turned many down: ask for more at once
        rows = await source.search_candidates(query, before, size)
        found.extend([row for row in rows if query.terms.matches(row[1].message, row[1].fields)][:wanted])
        if len(rows) < size:
            break
        before = rows[-1][0]
    return found
