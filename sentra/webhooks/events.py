"""The events storage writes into the outbox: which status change is an event, which lines match a webhook, and
the Standard Webhooks payload `{"type", "timestamp", "data"}` of each. Pure: storage calls it inside the
transaction that causes the event."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sentra.lines import Line
from sentra.models import Agent
from sentra.webhooks.records import LINES_MATCHED, STATUS_EVENTS, WEBHOOK_TEST, Webhook

LINES_CARRIED = 20  # lines an event carries: the last before a status event, the first matching ones otherwise
DEFAULT_MATCH_WINDOW = 60.0


def iso_time(moment: float) -> str:
    """An ISO 8601 UTC time with milliseconds, as the payload's timestamp."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_event(before: Agent, after: Agent) -> str | None:
    """The event of an agent's change of status (agent.failed, agent.completed), or None."""
    if before.status == after.status:
        return None
    return STATUS_EVENTS.get(after.status)


def payload(event: str, agent: Agent | None, lines: list[Line], now: float, **extra: Any) -> dict[str, Any]:
    """An event as stored in the outbox (the agent's viewer link is added when it is sent)."""
    data: dict[str, Any] = {}
    if agent is not None:
        data["agent"] = agent.to_json()
    data["lines"] = [line.to_json() for line in lines[-LINES_CARRIED:]]
    data.update(extra)
    return {"type": event, "timestamp": iso_time(now), "data": data}


def test_payload(hook: Webhook, now: float) -> dict[str, Any]:
    """What POST /api/webhooks/{id}/test sends."""
    return {
        "type": WEBHOOK_TEST,
        "timestamp": iso_time(now),
        "data": {"webhook": hook.id, "message": "A test event from Sentra: this webhook works."},
    }


def merge_matches(stored: dict[str, Any], agent: Agent, lines: list[Line], now: float) -> dict[str, Any]:
    """A lines.matched payload not yet sent, with more matching lines: the count grows, the first lines stay."""
    data = stored["data"]
    room = LINES_CARRIED - len(data["lines"])
    data["lines"] += [line.to_json() for line in lines[: max(0, room)]]
    data["count"] += len(lines)
    data["agent"] = agent.to_json()
    stored["timestamp"] = iso_time(now)
    return stored


def matched_payload(agent: Agent, lines: list[Line], now: float) -> dict[str, Any]:
    """A new lines.matched event: the first matching lines and how many there were."""
    return payload(LINES_MATCHED, agent, lines[:LINES_CARRIED], now, count=len(lines))


def matching_lines(hook: Webhook, lines: Iterable[Line]) -> list[Line]:
    """The lines a lines.matched webhook asks for: at or above its level and containing its text (case ignored)."""
    text = (hook.contains or "").lower()
    return [line for line in lines if line.levelno >= hook.min_level and text in line.message.lower()]


@dataclass
class LineHooks:
    """The lines.matched webhooks, held in memory so that ingest pays one dictionary look-up when none applies;
    `window` is the debounce: at most one delivery per agent and webhook in that many seconds."""

    by_owner: dict[str, list[Webhook]] = field(default_factory=dict)
    everyone: list[Webhook] = field(default_factory=list)
    window: float = DEFAULT_MATCH_WINDOW

    @classmethod
    def of(cls, hooks: Iterable[Webhook], window: float) -> LineHooks:
        """The set of these webhooks that ask for lines.matched."""
        held = cls(window=window)
        for hook in hooks:
            if LINES_MATCHED in hook.events:
                (held.everyone if hook.all_agents else held.by_owner.setdefault(hook.owner, [])).append(hook)
        return held

    def matches(self, agent: Agent, lines: list[Line]) -> list[tuple[Webhook, list[Line]]]:
        """The webhooks these new lines of `agent` trigger, each with its matching lines."""
        if not self.everyone and agent.owner not in self.by_owner:
            return []
        found = []
        for hook in (*self.by_owner.get(agent.owner, ()), *self.everyone):
            if hook.applies_to(agent):
                matching = matching_lines(hook, lines)
                if matching:
                    found.append((hook, matching))
        return found

    def matches_of_batch(self, staged: dict[str, Agent], written: Iterable[tuple[str, Sequence[Line]]]) -> list[Any]:
        """(webhook, agent, lines) for every webhook a group commit's lines trigger, one entry per agent."""
        if not self.everyone and not self.by_owner:
            return []
        by_agent: dict[str, list[Line]] = {}
        for agent_id, lines in written:
            if lines:
                by_agent.setdefault(agent_id, []).extend(lines)
        return [
            (hook, staged[agent_id], matching)
            for agent_id, lines in by_agent.items()
            for hook, matching in self.matches(staged[agent_id], lines)
        ]
