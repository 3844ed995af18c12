"""Following an agent for an assistant: its lines after a seq as soon as there are any, else the next ones it logs,
its end, or a timeout.

The caller subscribes in the topic registry before `next_lines` first reads storage, so a line committed between the
two still wakes it. A wake-up only says that something happened; what is new is read from storage after the cursor,
which holds every committed line, so nothing is missed or repeated, on any process of a PostgreSQL + Redis deployment
too (the bus feeds each process's registry).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sentra.errors import ServiceUnavailable
from sentra.lines import Line
from sentra.models import Agent
from sentra.registry import Subscription
from sentra.storage.base import Storage

# Why a wait ended.
NEW_LINES = "lines"  # lines after the cursor (the agent is still running, or more remain)
FINISHED = "finished"  # the agent completed or failed, and these are its last lines
DELETED = "deleted"  # the agent was deleted
TIMEOUT = "timeout"  # nothing new within the timeout
REASONS = (NEW_LINES, FINISHED, DELETED, TIMEOUT)

# Why the registry may stop a subscription early, as the assistant reads it.
_CUT_MESSAGES = {
    "shutdown": "the server is shutting down; call again in a moment",
    "token_revoked": "the token has been revoked",
    "token_expired": "the token has expired",
    "overflow": "lines came faster than they could be followed; call again",
}


@dataclass(frozen=True, slots=True)
class Followed:
    """What a wait found: the agent as it is now, its new lines (ascending) and why the wait ended."""

    agent: Agent
    lines: list[Line]
    reason: str


async def next_lines(
    store: Storage, sub: Subscription, agent: Agent, after: int, *, timeout: float, limit: int
) -> Followed:
    """Up to `limit` lines of `agent` after seq `after`: at once if storage has some, else once some are committed,
    the agent ends or is deleted, or `timeout` seconds pass. `sub` must follow the agent already."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        current = await store.get_agent(agent.id)
        if current is None or current.pk != agent.pk:
            return Followed(agent, [], DELETED)
        lines = await store.lines_after(current, after, limit=limit)
        if current.finished and (not lines or lines[-1].seq >= current.last_seq):
            return Followed(current, lines, FINISHED)
        if lines:
            return Followed(current, lines, NEW_LINES)
        if sub.cut_reason is not None:
            raise ServiceUnavailable(f"stopped waiting: {_CUT_MESSAGES.get(sub.cut_reason, sub.cut_reason)}")
        remaining = deadline - loop.time()
        if remaining <= 0 or not await sub.wait(remaining):
            return Followed(current, [], TIMEOUT)
        if sub.cut_reason not in (None, "overflow"):
            # Revoked, expired or shutting down: nothing more is read for this caller.
            raise ServiceUnavailable(f"stopped waiting: {_CUT_MESSAGES.get(sub.cut_reason, sub.cut_reason)}")
        sub.take()
