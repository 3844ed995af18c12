"""The in-memory topic registry: who watches which agent, with a bounded queue per subscriber.

Pure asyncio (no Tornado): the store tells it, in commit order, of new lines and status changes; each
subscription holds references to the same Line objects, so a line's wire bytes are built once and
shared by every subscriber.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from sentra.lines import Line
from sentra.models import Agent


@dataclass(frozen=True, slots=True)
class AgentUpdate:
    """An item in a subscription's queue: the agent changed (status, name, labels) or was deleted."""

    agent: Agent
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Resync:
    """An item in a subscription's queue: commits may have been missed (the bus was down); re-read storage."""


Item = Line | AgentUpdate | Resync


class Subscription:
    """One open stream: the agents it follows, its queue of items and why it was cut, if it was."""

    def __init__(
        self,
        user: str,
        *,
        token_ids: Iterable[str | None] = (),
        agent_ids: set[str] | None = None,
        label_filter: Callable[[Agent], bool] | None = None,
        max_pending: int = 10000,
    ) -> None:
        self.user = user
        # The token's jti and, for a ticket, its parent's: revoking either ends the stream.
        self.token_ids = frozenset(jti for jti in token_ids if jti)
        self.agent_ids: set[str] = set(agent_ids or ())
        self.label_filter = label_filter
        self.max_pending = max_pending
        self.pending: deque[Item] = deque()
        self.backlog = 0
        self.cut_reason: str | None = None
        self.on_cut: Callable[[str], None] | None = None
        # Set by a stream that has caught up: lines are then written at publish time, with no wake-up,
        # and `shared` lets subscribers with the same wire format reuse one encoding of the batch.
        self.direct: Callable[[Sequence[Line], dict[Hashable, bytes]], None] | None = None
        # Set while the stream replays history; `resync` says queued lines were dropped meanwhile.
        self.replaying = False
        self.resync = False
        # The reader parked in wait(), if any: one future per wait, no task (Tornado's chat demo).
        self._waiter: asyncio.Future[bool] | None = None

    def follows(self, agent: Agent) -> bool:
        """True if lines of `agent` belong in this stream."""
        if agent.id in self.agent_ids:
            return True
        if self.label_filter is not None and self.label_filter(agent):
            # A label stream picks up agents that appear after it opened.
            self.agent_ids.add(agent.id)
            return True
        return False

    def push_lines(self, lines: Sequence[Line], shared: dict[Hashable, bytes] | None = None) -> None:
        """Deliver or queue lines; once more than `max_pending` wait while the reader is busy, it is cut off."""
        if self.cut_reason is not None:
            return
        if self.direct is not None and not self.pending:
            self.direct(lines, {} if shared is None else shared)
            return
        if self.replaying:
            self.pending.extend(lines)
            self.backlog += len(lines)
            if self.backlog > self.max_pending:
                # The stream is still reading history from SQLite, where these lines are too: drop them
                # here and let the replay read on, rather than cut a reader that did nothing wrong.
                self.pending = deque(item for item in self.pending if not isinstance(item, Line))
                self.backlog = 0
                self.resync = True
            return
        self.pending.extend(lines)
        # A reader parked in wait() takes the whole queue on its next turn, however large one group
        # commit was; only lines that pile up while it is still writing earlier ones mean it is slow.
        if self._waiter is None:
            self.backlog += len(lines)
            if self.backlog > self.max_pending:
                self.cut("overflow")
                return
        self._wake()

    def push_update(self, update: AgentUpdate) -> None:
        """Queue an agent change, in order with its lines."""
        if self.cut_reason is None:
            self.pending.append(update)
            self._wake()

    def push_resync(self) -> None:
        """Queue a re-read from storage: the reader catches up from its cursor before anything newer."""
        if self.cut_reason is None:
            self.pending.append(Resync())
            self._wake()

    def take(self) -> list[Item]:
        """Everything queued, oldest first, emptying the queue."""
        items = list(self.pending)
        self.pending.clear()
        self.backlog = 0
        return items

    def cut(self, reason: str) -> None:
        """End this stream for `reason` (overflow, token_expired, token_revoked, shutdown)."""
        if self.cut_reason is not None:
            return
        self.cut_reason = reason
        self.pending.clear()
        self.backlog = 0
        self._wake()
        if self.on_cut is not None:
            self.on_cut(reason)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, timeout: float | None) -> bool:
        """Wait until something is queued or the stream is cut; False on timeout."""
        if self.pending or self.cut_reason is not None:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _time_up, waiter) if timeout is not None else None
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _time_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class TopicRegistry:
    """Subscriptions by agent, fed by the store's commit notifications."""

    def __init__(self) -> None:
        self._by_agent: dict[str, set[Subscription]] = {}
        self._label_subs: set[Subscription] = set()
        self._all: set[Subscription] = set()
        self._per_user: Counter[str] = Counter()
        self.deliveries = 0
        self.resyncs = 0
        self.cut_offs: Counter[str] = Counter()

    @property
    def open_streams(self) -> int:
        """How many streams are open."""
        return len(self._all)

    def streams_of(self, user: str) -> int:
        """How many streams `user` has open."""
        return self._per_user[user]

    def subscribe(self, sub: Subscription) -> None:
        """Start delivering to `sub`."""
        self._all.add(sub)
        self._per_user[sub.user] += 1
        for agent_id in sub.agent_ids:
            self._by_agent.setdefault(agent_id, set()).add(sub)
        if sub.label_filter is not None:
            self._label_subs.add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to `sub`; safe to call twice."""
        if sub not in self._all:
            return
        self._all.discard(sub)
        self._per_user[sub.user] -= 1
        if self._per_user[sub.user] <= 0:
            del self._per_user[sub.user]
        self._label_subs.discard(sub)
        for agent_id in sub.agent_ids:
            subs = self._by_agent.get(agent_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_agent[agent_id]

    def _targets(self, agent: Agent) -> list[Subscription]:
        subs = list(self._by_agent.get(agent.id, ()))
        for sub in self._label_subs:
            if agent.id not in sub.agent_ids and sub.follows(agent):
                self._by_agent.setdefault(agent.id, set()).add(sub)
                subs.append(sub)
        return subs

    def lines_committed(self, agent: Agent, lines: Sequence[Line]) -> None:
        """Deliver (or queue) committed lines to every subscriber of the agent."""
        targets = self._targets(agent)
        if not targets:
            return  # the lines' objects are never made (storage hands them over lazily)
        # One list for every subscriber: each looks at the first and last line and iterates.
        lines = lines if type(lines) is list else list(lines)
        shared: dict[Hashable, bytes] = {}
        for sub in targets:
            if sub.cut_reason is not None:
                continue
            sub.push_lines(lines, shared)
            if sub.cut_reason == "overflow":
                self.cut_offs["overflow"] += 1
                self.unsubscribe(sub)
            else:
                self.deliveries += len(lines)

    def agent_changed(self, agent: Agent) -> None:
        """Queue a status/name/label change for every subscriber of the agent."""
        for sub in self._targets(agent):
            sub.push_update(AgentUpdate(agent.copy()))

    def agent_deleted(self, agent: Agent) -> None:
        """Tell every subscriber of the agent that it is gone."""
        for sub in list(self._by_agent.get(agent.id, ())):
            sub.push_update(AgentUpdate(agent.copy(), deleted=True))

    def resync_all(self) -> None:
        """Commits may have been missed (the bus reconnected): every stream re-reads storage from its cursor."""
        self.resyncs += 1
        for sub in list(self._all):
            sub.push_resync()

    def cut_token(self, jti: str, reason: str = "token_revoked") -> int:
        """Cut every stream opened with the token `jti` or with a ticket made from it."""
        cut = 0
        for sub in list(self._all):
            if jti in sub.token_ids and sub.cut_reason is None:
                self.cut(sub, reason)
                cut += 1
        return cut

    def cut(self, sub: Subscription, reason: str) -> None:
        """Cut one stream and count why."""
        if sub.cut_reason is None:
            self.cut_offs[reason] += 1
        sub.cut(reason)

    def cut_all(self, reason: str) -> None:
        """Cut every stream (at shutdown)."""
        for sub in list(self._all):
            self.cut(sub, reason)
