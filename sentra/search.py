"""Search across agents: the lines of every agent a caller may read that match a query, newest first.

There is no index across agents yet: `search_lines` asks each of the caller's newest agents for its newest matching
lines through the storage interface (the same filter as one agent's history `q` and `level`) and merges them. An
index (FTS5 on SQLite, full-text search on PostgreSQL) replaces this function's body, not its callers.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from sentra.auth import Principal
from sentra.lines import Line
from sentra.models import Agent
from sentra.reads import visible_agents
from sentra.storage.base import LineQuery, Storage

# The newest agents a search looks through: bounded, so a search costs at most this many history reads.
SEARCH_MAX_AGENTS = 200


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Matching lines, newest first, each with its agent; `agents_searched` says how far the search looked and
    `more_agents` whether older agents were left out."""

    lines: list[tuple[Agent, Line]]
    agents_searched: int
    more_agents: bool


async def search_lines(
    store: Storage, principal: Principal, q: str, min_level: int, labels: dict[str, str], limit: int
) -> SearchResult:
    """The newest `limit` lines whose message contains `q` (ASCII case-insensitive) at `min_level` or above, across
    the agents `principal` may read that carry `labels`."""
    agents = await visible_agents(store, principal, labels=labels, limit=SEARCH_MAX_AGENTS + 1)
    more_agents = len(agents) > SEARCH_MAX_AGENTS
    agents = agents[:SEARCH_MAX_AGENTS]
    query = LineQuery(min_level=min_level, q=q)
    found: list[tuple[Agent, Line]] = []
    for agent in agents:
        if agent.last_seq == 0:
            continue  # no line yet: nothing to ask storage for
        lines = await store.lines_before(agent, agent.last_seq + 1, limit=limit, query=query)
        found.extend((agent, line) for line in lines)
    newest = heapq.nlargest(limit, found, key=lambda pair: (pair[1].ts, pair[0].pk, pair[1].seq))
    return SearchResult(newest, len(agents), more_agents)
