"""RedisBus: carries every commit to this process's registry at once and to the other processes through Redis.

All processes of a deployment share one channel, `<prefix>:commits`: every process needs every commit its
registry may have a subscriber for, and which agents those are changes with every stream opened, so per-agent
channels would mean a SUBSCRIBE round trip before a stream could go live, and ordering between an agent's
status change and its lines would hang on two channels. One channel keeps each process's commits in order.

A message is JSON: {"o": origin, "n": number of its first event, "e": [event, ...]}, where an event is
["l", agent, [[seq, ts, level, message, source, fields], ...]], ["c", agent] or ["d", agent], and an agent
is [pk, id, name, owner, status, reason, labels, created_at, updated_at, last_line_at, first_seq, last_seq,
stop_requested_by, summary] (summary as RunSummary.to_wire gives it).
Events are numbered per origin, so a receiver that sees a gap (events dropped while Redis was slow or
down) asks every stream to re-read storage, exactly as after its own reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from sentra.bus.redis_link import CONNECT_TIMEOUT, MAX_BACKOFF, MIN_BACKOFF, LiveLink, close_pubsub, connect, redacted
from sentra.lines import Line
from sentra.models import Agent
from sentra.registry import TopicRegistry
from sentra.storage.base import Storage
from sentra.summary import RunSummary

log = logging.getLogger("sentra.bus")

MAX_QUEUED = 50_000  # events waiting for Redis; past this the oldest are dropped (receivers resync)
EVENTS_PER_MESSAGE = 256
EVENTS_PER_FLUSH = 4096
CLOSE_FLUSH_TIMEOUT = 3.0
ORIGINS_KEPT = 1024


def agent_to_wire(agent: Agent) -> list[Any]:
    """The agent record as a JSON array (every field but `extra`)."""
    return [
        agent.pk,
        agent.id,
        agent.name,
        agent.owner,
        agent.status,
        agent.reason,
        agent.labels,
        agent.created_at,
        agent.updated_at,
        agent.last_line_at,
        agent.first_seq,
        agent.last_seq,
        agent.stop_requested_by,
        agent.summary.to_wire(),
    ]


def agent_from_wire(row: list[Any]) -> Agent:
    """The agent record from its JSON array."""
    row, summary = row[:-1], row[-1]  # the summary comes last
    pk, agent_id, name, owner, status, reason, labels, created, updated, last_line_at, first, last, stop_by = row
    agent = Agent(pk, agent_id, name, owner, status, reason, labels, created, updated, last_line_at, first, last)
    agent.stop_requested_by = stop_by
    agent.summary = RunSummary.from_wire(summary)
    return agent


def lines_to_wire(lines: Sequence[Line]) -> list[list[Any]]:
    """Lines as JSON arrays (their agent is the event's)."""
    return [[line.seq, line.ts, line.level, line.message, line.source, line.fields] for line in lines]


def lines_from_wire(agent_id: str, rows: list[list[Any]]) -> list[Line]:
    """Lines from their JSON arrays."""
    return [Line(agent_id, seq, ts, level, message, source, fields) for seq, ts, level, message, source, fields in rows]


class RedisBus:
    """bus.url = redis://: local delivery at commit time, plus one publisher and one subscriber task."""

    def __init__(self, url: str, registry: TopicRegistry, storage: Storage, *, prefix: str = "sentra") -> None:
        self.url = url
        self.registry = registry
        self.storage = storage
        self.channel = f"{prefix}:commits"
        self.origin = uuid.uuid4().hex
        self.dropped = 0
        self.reconnects = 0
        self._queue: deque[tuple[int, list[Any]]] = deque()
        self._numbers = itertools.count()
        self._wake = asyncio.Event()
        self._expected: OrderedDict[str, int] = OrderedDict()
        self._client: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect and subscribe; OSError with a clear message if Redis cannot be reached."""
        self._client = connect(self.url)
        try:
            pubsub = await self._subscribe()
        except (RedisError, OSError) as exc:
            await self._client.aclose()
            raise OSError(f"Redis at {redacted(self.url)} cannot be reached: {exc}") from None
        self._tasks = [asyncio.create_task(self._publish_forever()), asyncio.create_task(self._receive_forever(pubsub))]

    async def close(self) -> None:
        """Stop receiving, send what is queued (waiting at most a few seconds), and disconnect."""
        if not self._tasks:
            return
        publisher, receiver = self._tasks
        receiver.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_FLUSH_TIMEOUT
        while self._queue and not publisher.done() and loop.time() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._queue:
            log.warning("bus: %d events not sent to Redis at shutdown", len(self._queue))
        publisher.cancel()
        await asyncio.gather(publisher, receiver, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()

    # ---- the storage's commit listener ------------------------------------------------------------

    def lines_committed(self, agent: Agent, lines: Sequence[Line]) -> None:
        """Deliver to this process's subscribers, and queue for the others."""
        self.registry.lines_committed(agent, lines)
        self._enqueue(["l", agent_to_wire(agent), lines])

    def agent_changed(self, agent: Agent) -> None:
        """Tell this process's subscribers, and queue for the others."""
        self.registry.agent_changed(agent)
        self._enqueue(["c", agent_to_wire(agent)])

    def agent_deleted(self, agent: Agent) -> None:
        """Tell this process's subscribers, and queue for the others."""
        self.registry.agent_deleted(agent)
        self._enqueue(["d", agent_to_wire(agent)])

    def _enqueue(self, event: list[Any]) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((next(self._numbers), event))
        self._wake.set()

    # ---- publishing -------------------------------------------------------------------------------

    def _message(self, batch: list[tuple[int, list[Any]]]) -> bytes:
        events = [[event[0], event[1], lines_to_wire(event[2])] if event[0] == "l" else event for _, event in batch]
        body = {"o": self.origin, "n": batch[0][0], "e": events}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    async def _publish_forever(self) -> None:
        assert self._client is not None
        delay = MIN_BACKOFF
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = list(itertools.islice(self._queue, EVENTS_PER_FLUSH))
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for start in range(0, len(batch), EVENTS_PER_MESSAGE):
                            pipe.publish(self.channel, self._message(batch[start : start + EVENTS_PER_MESSAGE]))
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    if delay == MIN_BACKOFF:
                        log.warning("bus: cannot publish to Redis (%s); %d events queued, retrying", exc, len(batch))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                delay = MIN_BACKOFF
                # Events may have been dropped from the front meanwhile: remove up to the last one sent.
                last = batch[-1][0]
                while self._queue and self._queue[0][0] <= last:
                    self._queue.popleft()

    # ---- receiving --------------------------------------------------------------------------------

    async def _subscribe(self) -> PubSub:
        assert self._client is not None
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                while True:
                    message = await pubsub.get_message(timeout=CONNECT_TIMEOUT)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except BaseException:
            await close_pubsub(pubsub)
            raise

    async def _receive_forever(self, pubsub: PubSub) -> None:
        delay = MIN_BACKOFF
        while True:
            try:
                await self._receive(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("bus: lost the Redis subscription (%s); reconnecting", exc)
            await close_pubsub(pubsub)
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                try:
                    pubsub = await self._subscribe()
                    break
                except (RedisError, OSError, TimeoutError):
                    continue
            delay = MIN_BACKOFF
            self.reconnects += 1
            log.info("bus: Redis subscription restored; streams re-read what they may have missed")
            self._resync()

    async def _receive(self, pubsub: PubSub) -> None:
        link = LiveLink(pubsub)
        while True:
            message = await link.next()
            if message["type"] == "message":
                self._deliver(message["data"])
            elif message["type"] == "subscribe":
                # redis-py resubscribed on a new connection by itself: commits may have been missed.
                self._resync()

    def _resync(self) -> None:
        self._expected.clear()
        self.registry.resync_all()

    def _deliver(self, data: bytes) -> None:
        try:
            body = json.loads(data)
            origin, number, events = body["o"], body["n"], body["e"]
        except (ValueError, KeyError, TypeError):
            log.warning("bus: ignored a message on %s that is not Sentra's", self.channel)
            return
        if origin == self.origin:
            return
        expected = self._expected.pop(origin, None)
        self._expected[origin] = max(expected or 0, number + len(events))
        if len(self._expected) > ORIGINS_KEPT:
            self._expected.popitem(last=False)
        if expected is not None and number > expected:
            log.warning("bus: %d events from another process were lost; streams re-read storage", number - expected)
            self.registry.resync_all()
        # A batch sent again after a failed pipeline may repeat events already applied.
        skip = 0 if expected is None else max(0, expected - number)
        for event in events[skip:]:
            try:
                self._apply(event)
            except (ValueError, TypeError, IndexError):
                log.warning("bus: ignored a malformed event on %s", self.channel)

    def _apply(self, event: list[Any]) -> None:
        kind, agent = event[0], agent_from_wire(event[1])
        if kind == "d":
            self.storage.forget_agent(agent)
            self.registry.agent_deleted(agent)
            return
        newest = self.storage.observe_agent(agent)
        if kind == "l":
            self.registry.lines_committed(newest, lines_from_wire(agent.id, event[2]))
        else:
            self.registry.agent_changed(newest)
