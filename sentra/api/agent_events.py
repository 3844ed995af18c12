"""GET /api/agent-events: the caller's agents as a live feed, for the viewer's agents page.

The first event is a snapshot of the agents; after it, an agent is sent again when it is created or changes
status, name or labels (at once), when its line count moves (at most once a second per agent), and
is removed when it is deleted or no longer matches the feed's labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sentra import sse
from sentra.api.agents import parse_label_arguments
from sentra.api.streams import StreamHandler
from sentra.lines import Line
from sentra.models import Agent
from sentra.registry import AgentUpdate, Resync
from sentra.scopes import SCOPE_READ

ACTIVITY_INTERVAL = 1.0
SNAPSHOT_LIMIT = 1000
_STOP_REASONS = ("token_expired", "token_revoked")


def agents_event(kind: str, agents: list[Agent], reason: str | None = None) -> bytes:
    """One feed event: {"type": snapshot|update|removed|end, "agents": [...]} (end carries a reason)."""
    payload: dict[str, Any] = {"type": kind, "agents": [agent.to_json() for agent in agents]}
    if reason is not None:
        payload["reason"] = reason
    return sse.encode_sse(sse.json_bytes(payload))


class AgentEventsHandler(StreamHandler):
    """The feed: a snapshot, then changes of every agent the caller may read (optionally by label)."""

    async def get(self) -> None:
        """Open the feed; ?label=key=value narrows it to matching agents."""
        principal = self.principal
        principal.require(SCOPE_READ)
        wanted = parse_label_arguments(self.get_query_arguments("label"))

        def visible(agent: Agent) -> bool:
            return agent.matches_labels(wanted) and principal.may_access(agent.owner, agent.id)

        # Agents already listed are followed by id too, so their deletion reaches this feed.
        known = await self._list(wanted)
        self.open_subscription({agent.id for agent in known}, visible)
        await self.run(lambda: self._feed(wanted, visible))

    async def _list(self, wanted: dict[str, str]) -> list[Agent]:
        principal = self.principal
        if principal.agent is not None:
            agent = await self.store.get_agent(principal.agent)
            return [agent] if agent is not None and agent.matches_labels(wanted) else []
        owner = None if principal.is_admin else principal.subject
        return await self.store.list_agents(owner, labels=wanted, limit=SNAPSHOT_LIMIT)

    async def _feed(self, wanted: dict[str, str], visible: Callable[[Agent], bool]) -> None:
        assert self.sub is not None
        # Listed again after subscribing, so an agent created in between is in the snapshot.
        await self.send(agents_event("snapshot", await self._list(wanted)))
        reported: dict[str, float] = {}
        active: dict[str, None] = {}  # agents with lines not reported yet, in order of activity
        while True:
            items = await self._next_items(active, reported)
            if isinstance(items, str):
                if items in _STOP_REASONS:
                    await self.send(agents_event("end", [], items))
                return
            if any(isinstance(item, Resync) for item in items):
                # Changes may have been missed (the bus was down): a new snapshot replaces the old one.
                await self.send(agents_event("snapshot", await self._list(wanted)))
                active.clear()
                continue
            changed: dict[str, Agent] = {}
            removed: dict[str, Agent] = {}
            for item in items:
                if isinstance(item, Line):
                    active[item.agent] = None
                    continue
                agent_id = item.agent.id
                active.pop(agent_id, None)
                if item.deleted or not visible(item.agent):
                    removed[agent_id] = item.agent
                    changed.pop(agent_id, None)
                else:
                    changed[agent_id] = self._current(item)
                    removed.pop(agent_id, None)
            now = time.monotonic()
            for agent_id in [a for a in active if now - reported.get(a, -ACTIVITY_INTERVAL) >= ACTIVITY_INTERVAL]:
                del active[agent_id]
                agent = self.store.cached_agent(agent_id) or await self.store.get_agent(agent_id)
                if agent is not None and visible(agent):
                    changed[agent_id] = agent
            if removed:
                await self.send(agents_event("removed", list(removed.values())))
                for agent_id in removed:
                    reported.pop(agent_id, None)
            if changed:
                await self.send(agents_event("update", list(changed.values())))
                reported.update(dict.fromkeys(changed, now))

    def _current(self, update: AgentUpdate) -> Agent:
        """The agent as it is now (line count included), unless the id was deleted and created anew since."""
        cached = self.store.cached_agent(update.agent.id)
        return cached if cached is not None and cached.pk == update.agent.pk else update.agent

    async def _next_items(self, active: dict[str, None], reported: dict[str, float]) -> list[Any] | str:
        """Items as they come; while activity waits for its turn, wake when the first one is due."""
        assert self.sub is not None
        if not active:
            return await self.next_items(sse.comment("heartbeat"))
        expires_at = self.principal.expires_at
        if expires_at is not None and time.time() >= expires_at:
            self.registry.cut(self.sub, "token_expired")
            return "token_expired"
        due = min(reported.get(a, -ACTIVITY_INTERVAL) for a in active) + ACTIVITY_INTERVAL - time.monotonic()
        if due > 0:
            await self.sub.wait(due)
        if self.sub.cut_reason is not None:
            return self.sub.cut_reason
        return self.sub.take()
