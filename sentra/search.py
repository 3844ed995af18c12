"""Search across agents: the lines of every agent a caller may read that match a query, newest first, a page at a
time, read through the word index (storage/search_index.py); GET /api/search and the MCP tool search_logs ask here.

Which lines match is sentra.storage.words' rule, the one history's and the streams' `q` follow. Pages are cut at a
line's place in the index, which only grows for new lines: a cursor from `next_cursor` pages on without a gap or a
repeat while lines keep arriving (those are newer than the first page, and not in the pages after it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentra.auth import Principal
from sentra.errors import BadRequest
from sentra.lines import Line
from sentra.reads import checked_agent, visible_agents
from sentra.scopes import SCOPE_READ
from sentra.storage.base import SearchQuery, Storage
from sentra.storage.words import parse_query

SEARCH_DEFAULT_LIMIT = 100
SEARCH_MAX_LIMIT = 1000
SEARCH_MAX_AGENTS = 100  # `agent` filters one search may carry


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """What narrows a search besides its words: minimum level, agent ids, labels, a time range (inclusive)."""

    min_level: int = 0
    agent_ids: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Matching lines, newest first (each line names its agent), and the cursor of the next page (None: no more)."""

    lines: list[Line]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        """The page as GET /api/search answers it."""
        return {"lines": [line.to_json() for line in self.lines], "next_cursor": self.next_cursor}


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise BadRequest(
            f"query parameter 'cursor' {cursor[:40]!r} is not a next_cursor this search answered", code="invalid_cursor"
        ) from None


async def search_lines(
    store: Storage,
    principal: Principal,
    q: str,
    filters: SearchFilters,
    *,
    limit: int = SEARCH_DEFAULT_LIMIT,
    cursor: str | None = None,
) -> SearchPage:
    """The newest `limit` lines matching `q` and `filters` (after the page `cursor` ends) across the agents
    `principal` may read: its own, every agent for an admin, a stream ticket's one."""
    principal.require(SCOPE_READ)
    terms = parse_query(q)
    if not terms:
        raise BadRequest("query parameter 'q' is required: the words to search for", code="invalid_query")
    if filters.since is not None and filters.until is not None and filters.since > filters.until:
        raise BadRequest("query parameter 'since' is after 'until'")
    if len(filters.agent_ids) > SEARCH_MAX_AGENTS:
        raise BadRequest(f"at most {SEARCH_MAX_AGENTS} 'agent' parameters, not {len(filters.agent_ids)}")
    before = _before(cursor)
    pks: tuple[int, ...] | None = None
    if filters.agent_ids:
        pks = tuple([(await checked_agent(store, principal, agent_id)).pk for agent_id in filters.agent_ids])
    owner = None if principal.is_admin else principal.subject
    if principal.agent is not None:
        # A stream ticket reads its one agent, whoever owns it.
        ticketed = [agent.pk for agent in await visible_agents(store, principal, limit=1)]
        pks, owner = tuple(pk for pk in (ticketed if pks is None else pks) if pk in ticketed), None
    query = SearchQuery(terms, filters.min_level, owner, pks, filters.labels, filters.since, filters.until)
    found = await store.search_lines(query, before=before, limit=limit + 1)
    more = len(found) > limit
    found = found[:limit]
    return SearchPage([line for _, line in found], str(found[-1][0]) if more else None)
