"""What a caller may read, read one way by the HTTP endpoints and the MCP tools: the agents a principal sees, one
agent with its owner checked, and a page of an agent's history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentra.auth import Principal
from sentra.errors import BadRequest, Forbidden, NotFound
from sentra.lines import Line, check_agent_id
from sentra.models import Agent
from sentra.scopes import SCOPE_READ
from sentra.storage.base import LineQuery, Storage

LIST_DEFAULT_LIMIT = 100  # agents in a list, unless asked
LIST_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Lines of one agent, ascending, and the cursors that page on (None: nothing more that way)."""

    lines: list[Line]
    next_after: int | None
    next_before: int | None

    def to_json(self) -> dict[str, Any]:
        """The page as GET /api/agents/{id}/logs answers it."""
        return {
            "lines": [line.to_json() for line in self.lines],
            "next_after": self.next_after,
            "next_before": self.next_before,
        }


def check_owner(principal: Principal, agent: Agent) -> None:
    """Forbidden unless `principal` may read and write `agent`."""
    if not principal.may_access(agent.owner, agent.id):
        raise Forbidden(f"agent {agent.id!r} belongs to another user", code="not_owner")


async def checked_agent(store: Storage, principal: Principal, agent_id: str, scope: str = SCOPE_READ) -> Agent:
    """The agent `agent_id`, after checking the scope, the id, its existence and its owner, in that order."""
    principal.require(scope)
    check_agent_id(agent_id)
    agent = await store.get_agent(agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id!r}", code="agent_not_found")
    check_owner(principal, agent)
    return agent


async def visible_agents(
    store: Storage,
    principal: Principal,
    *,
    status: str | None = None,
    labels: dict[str, str] | None = None,
    limit: int = 100,
    before_pk: int | None = None,
) -> list[Agent]:
    """The agents `principal` may read, newest first, filtered by status and labels: its own, every agent for an
    admin, a stream ticket's one agent."""
    if principal.agent is not None:
        ticketed = await store.get_agent(principal.agent)
        if (
            ticketed is not None
            and principal.may_access(ticketed.owner, ticketed.id)
            and status in (None, ticketed.status)
            and ticketed.matches_labels(labels or {})
        ):
            return [ticketed]
        return []
    owner = None if principal.is_admin else principal.subject
    return await store.list_agents(owner, status=status, labels=labels, limit=limit, before_pk=before_pk)


async def history_page(
    store: Storage, agent: Agent, *, after: int | None, before: int | None, limit: int, query: LineQuery
) -> HistoryPage:
    """Up to `limit` lines of `agent` matching `query`: the first after `after`, or the last before `before`."""
    if after is not None and before is not None:
        raise BadRequest("use either 'after' or 'before', not both")
    if before is not None:
        lines = await store.lines_before(agent, before, limit=limit, query=query)
    else:
        lines = await store.lines_after(agent, after or 0, limit=limit, query=query)
    # Lines may have arrived since `agent` was read: judge "more" against the agent as it is now.
    agent = store.cached_agent(agent.id) or agent
    more_after = bool(lines) and lines[-1].seq < agent.last_seq and (before is not None or len(lines) == limit)
    more_before = bool(lines) and before is not None and len(lines) == limit and lines[0].seq > agent.first_seq
    return HistoryPage(lines, lines[-1].seq if more_after else None, lines[0].seq if more_before else None)
