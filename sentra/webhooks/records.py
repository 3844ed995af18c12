"""The webhook records shared by storage, the API and the worker: a registered webhook, a claimed outbox message
and one delivery attempt, with the event types a webhook may ask for."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sentra.models import Agent

AGENT_FAILED = "agent.failed"
AGENT_COMPLETED = "agent.completed"
LINES_MATCHED = "lines.matched"
WEBHOOK_TEST = "webhook.test"
EVENT_TYPES = (AGENT_FAILED, AGENT_COMPLETED, LINES_MATCHED)
FORMATS = ("standard", "slack")
# What an agent's finishing status is announced as.
STATUS_EVENTS = {"failed": AGENT_FAILED, "completed": AGENT_COMPLETED}


@dataclass(slots=True)
class Webhook:
    """A user's webhook: where events go, which ones, for which agents, and the secret that signs them."""

    id: str
    owner: str
    all_agents: bool  # registered by an admin: every user's agents trigger it
    url: str
    events: list[str]
    secret: str
    format: str = "standard"
    label: str | None = None  # "key=value": only agents with this label
    min_level: int = 0  # lines.matched: lines at or above this level
    contains: str | None = None  # lines.matched: lines whose message contains this (case ignored)
    created_at: float = 0.0
    updated_at: float = 0.0
    failing_since: float | None = None
    last_delivery_at: float | None = None

    def applies_to(self, agent: Agent) -> bool:
        """True if `agent` may trigger this webhook: its owner's (any for an admin's) and carrying the label."""
        if not self.all_agents and agent.owner != self.owner:
            return False
        if self.label is None:
            return True
        key, _, value = self.label.partition("=")
        return agent.labels.get(key) == value

    def events_json(self) -> str:
        """The event types as stored."""
        return json.dumps(self.events)


@dataclass(slots=True)
class Message:
    """An outbox message claimed for delivery: its webhook-id, event, stored body and the webhook it goes to."""

    id: str
    event: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    hook: Webhook


@dataclass(slots=True)
class Attempt:
    """The outcome of one delivery attempt, as recorded and listed by GET /api/webhooks/{id}/deliveries."""

    message_id: str
    event: str
    attempt: int
    at: float
    result: str  # delivered, failed (will retry), refused (target not allowed; will retry), gave_up
    status: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The attempt as the API shows it."""
        return {
            "id": self.message_id,
            "event": self.event,
            "attempt": self.attempt,
            "at": self.at,
            "result": self.result,
            "status": self.status,
            "error": self.error,
        }
