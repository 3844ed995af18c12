"""The agent records a storage keeps in memory: bounded, least recently used out first, newest record wins."""

from __future__ import annotations

from collections import OrderedDict

from sentra.models import Agent

MAX_AGENTS = 100_000


class AgentCache(OrderedDict[str, Agent]):
    """Agent records by id; evicting one is always safe, since the database holds every agent."""

    def keep(self, agent: Agent) -> Agent:
        """Store `agent` as the current record of its id (most recently used), evicting the oldest past the bound."""
        self[agent.id] = agent
        self.move_to_end(agent.id)
        while len(self) > MAX_AGENTS:
            self.popitem(last=False)
        return agent

    def newest(self, agent: Agent) -> Agent:
        """Keep a record committed elsewhere if it is newer than the cached one; returns the newest."""
        current = self.get(agent.id)
        # pk first: an id deleted and created anew gets a higher pk, and its record is the newer one.
        if current is not None and (current.pk, current.last_seq, current.updated_at) >= (
            agent.pk,
            agent.last_seq,
            agent.updated_at,
        ):
            return current
        return self.keep(agent)

    def forget(self, agent: Agent) -> None:
        """The agent was deleted: drop it unless a newer one has taken its id."""
        current = self.get(agent.id)
        if current is not None and current.pk <= agent.pk:
            del self[agent.id]
