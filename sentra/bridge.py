"""RedisBridge: ingests the Redis channels seed 001's agents publish to, so those agents need no change at all.

Each message on a channel matching bridge.channel_pattern (`browser_use_logs:<id>`) becomes a line of the agent
named by the part after the channel's last ':', owned by bridge.owner (empty: the user of the token Sentra prints,
see auth.local_user): a JSON object in seed 001's format (the publisher's {"msg", "timestamp", "source", ...}, or
the SSE event whose "data" holds level, message, source and timestamp), any JSON object the ingest API reads, or
plain text. A JSON object with "type": "end" (optional "status": completed or failed, default completed, and
"reason"; seed 001's other keys are ignored) is no line: it finishes the agent as PATCH /api/agents/{id} does,
after the lines published before it. Seed 001's own publisher sends nothing when a run ends (its POST /agents
just returns), so without such a message a bridged agent stays running until agents.timeout fails it.

With several Sentra processes configured alike, exactly one ingests: the holder of a leader lock in Redis
(`<bus.prefix>:bridge:leader`, renewed every RENEW_EVERY, expiring after LOCK_TTL_MS). The others say once in
their log which process leads, poll for the lock as often and take over when the leader stops: within 1.5 s of
a clean shutdown, which releases the lock, and within 6.5 s of a crash, once the lock has expired.

Redis pub/sub keeps nothing: a message published while no leader is subscribed (Sentra down, Redis
unreachable, or during a take-over) is not stored. Agents that need every line kept should POST to Sentra.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from sentra.auth import local_user
from sentra.bus.redis_link import MAX_BACKOFF, MIN_BACKOFF, LiveLink, close_pubsub, connect, redacted
from sentra.config import Config
from sentra.errors import ApiError, BadRequest
from sentra.lines import FINISHED, NewLine, check_agent_id, line_from_object
from sentra.storage.base import Storage

log = logging.getLogger("sentra.bridge")

LOCK_TTL_MS = 5000
RENEW_EVERY = 1.5
MESSAGES_PER_BATCH = 1000
CLOSE_TIMEOUT = 5.0
WARNED_CHANNELS_KEPT = 1000
MAX_REASON_LENGTH = 4096  # as PATCH /api/agents/{id} allows

# KEYS[1] lock, ARGV[1] holder id, ARGV[2] ttl in ms: take the lock if free, or extend it if this process holds it
# (a renewal that failed on a broken connection must not make the holder wait for its own lock to expire);
# 1 if this process holds it now, else the holder's id, so a follower can say who leads.
TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return holder
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True)
class EndOfRun:
    """An end message: the agent finishes with `status`, and `reason` if one was given."""

    status: str
    reason: str | None = None


def end_of_run(obj: dict[str, Any]) -> EndOfRun:
    """What a {"type": "end", "status"?, "reason"?} message asks for; raises ValueError if it is malformed."""
    status = obj.get("status", "completed")
    if status not in FINISHED:
        raise ValueError(f"an end message's 'status' must be completed or failed, not {json.dumps(status)[:60]}")
    reason = obj.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH):
        raise ValueError(f"an end message's 'reason' must be a string of at most {MAX_REASON_LENGTH} characters")
    return EndOfRun(status, reason)


def read_message(data: bytes, now: float, max_line_size: int) -> NewLine | EndOfRun:
    """The line a published message stands for, or the end it announces; raises ValueError if it is neither
    (a malformed end, or a text too large even as a line)."""
    text = data.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            if obj.get("type") == "end":
                return end_of_run(obj)
            envelope = obj.get("data")
            if isinstance(envelope, dict) and "message" not in obj and "msg" not in obj:
                obj = envelope
            try:
                return line_from_object(obj, now, max_line_size)
            except ValueError:
                pass  # JSON, but no log record Sentra reads: keep the text as it came
    return line_from_object(text.rstrip("\r\n"), now, max_line_size)


class RedisBridge:
    """Subscribes to bridge.channel_pattern while holding the leader lock, and ingests what arrives."""

    def __init__(self, config: Config, store: Storage) -> None:
        self.url: str = config["bridge.redis_url"]
        self.pattern: str = config["bridge.channel_pattern"]
        self.owner: str = config["bridge.owner"] or local_user(config)
        self.max_line_size: int = config["limits.max_line_size"]
        self.lock_key = f"{config['bus.prefix']}:bridge:leader"
        self.store = store
        # Unique per bridge, and readable in the log of a process that does not lead.
        self.holder = f"{socket.gethostname()} pid {os.getpid()} #{uuid.uuid4().hex[:8]}"
        self._leader_named: str | None = None
        self._client = connect(self.url)
        self._take = self._client.register_script(TAKE)
        self._release = self._client.register_script(RELEASE)
        self._task: asyncio.Task[None] | None = None
        self._appending: asyncio.Future[Any] | None = None
        self._warned: set[str] = set()

    async def start(self) -> None:
        """Start contending for the lock; an unreachable Redis is retried in the background, with a warning."""
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop subscribing, let the batch being written commit, and release the lock."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._appending is not None:
            await asyncio.wait({self._appending}, timeout=CLOSE_TIMEOUT)
        try:
            await self._release(keys=[self.lock_key], args=[self.holder])
        except (RedisError, OSError):
            pass  # Redis is gone: the lock expires by itself
        await self._client.aclose()

    async def _run(self) -> None:
        delay = MIN_BACKOFF
        failing = False
        while True:
            try:
                leader = await self._claim()
                failing, delay = False, MIN_BACKOFF
                if leader is None:
                    self._leader_named = None
                    await self._lead()
                elif leader != self._leader_named:
                    self._leader_named = leader
                    log.info(
                        "bridge: another process (%s) ingests Redis channels %s; this one takes over if it goes away",
                        leader,
                        self.pattern,
                    )
                await asyncio.sleep(RENEW_EVERY)
            except (RedisError, OSError, TimeoutError) as exc:
                if not failing:
                    log.warning("bridge: Redis at %s cannot be reached (%s); retrying", redacted(self.url), exc)
                failing = True
            except Exception:
                # A bug must not end ingest for good: say so and start over.
                log.exception("bridge: unexpected error; starting over")
            else:
                continue
            # Pooled connections to a restarted Redis are dead: drop them all rather than fail on each in turn.
            await self._client.connection_pool.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    async def _claim(self) -> str | None:
        """Take or renew the leader lock: None if this process holds it now, else the holder's name."""
        holder = await self._take(keys=[self.lock_key], args=[self.holder, LOCK_TTL_MS])
        if holder == 1:
            return None
        return holder.decode("utf-8", errors="replace")[:200] if isinstance(holder, bytes) else "unknown"

    async def _lead(self) -> None:
        """Ingest while this process holds the lock; return when another process has it."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.psubscribe(self.pattern)
            log.info("bridge: ingesting Redis channels %s", self.pattern)
            receiving = asyncio.create_task(self._receive(pubsub))
            try:
                while True:
                    done, _ = await asyncio.wait({receiving}, timeout=RENEW_EVERY)
                    if done:
                        receiving.result()
                    leader = await self._claim()
                    if leader is not None:
                        log.warning("bridge: lost the leader lock; another process (%s) ingests now", leader)
                        return
            finally:
                receiving.cancel()
                await asyncio.gather(receiving, return_exceptions=True)
        finally:
            await close_pubsub(pubsub)

    async def _receive(self, pubsub: PubSub) -> None:
        link = LiveLink(pubsub)
        while True:
            message = await link.next()
            batch = [message]
            # Whatever has already arrived goes into the same commit.
            while len(batch) < MESSAGES_PER_BATCH:
                more = await pubsub.get_message(timeout=0)
                if more is None:
                    break
                batch.append(more)
            runs = self._runs_by_agent([item for item in batch if item["type"] == "pmessage"])
            if runs:
                # Shielded: a line handed to the store is committed even if the bridge stops meanwhile.
                self._appending = asyncio.ensure_future(
                    asyncio.gather(*(self._ingest(agent_id, *run) for agent_id, run in runs.items()))
                )
                await asyncio.shield(self._appending)

    def _runs_by_agent(self, messages: list[dict[str, Any]]) -> dict[str, tuple[str, list[list[NewLine] | EndOfRun]]]:
        """Per agent, its channel and its messages in order: consecutive lines grouped, each end on its own."""
        now = time.time()
        runs: dict[str, tuple[str, list[list[NewLine] | EndOfRun]]] = {}
        for message in messages:
            channel = message["channel"].decode("utf-8", errors="replace")
            try:
                agent_id = check_agent_id(channel.rsplit(":", 1)[-1])
                item = read_message(message["data"], now, self.max_line_size)
            except BadRequest as exc:
                self._skip(channel, exc.message)
                continue
            except ValueError as exc:
                self._skip(channel, str(exc))
                continue
            steps = runs.setdefault(agent_id, (channel, []))[1]
            if isinstance(item, EndOfRun):
                steps.append(item)
            elif steps and isinstance(steps[-1], list):
                steps[-1].append(item)
            else:
                steps.append([item])
        return runs

    def _skip(self, channel: str, why: str) -> None:
        if channel not in self._warned and len(self._warned) < WARNED_CHANNELS_KEPT:
            self._warned.add(channel)
            log.warning("bridge: skipped a message on %r: %s", channel[:200], why)

    async def _ingest(self, agent_id: str, channel: str, steps: list[list[NewLine] | EndOfRun]) -> None:
        """One agent's part of a batch, in order: the lines before an end are committed before it finishes."""
        for step in steps:
            if isinstance(step, EndOfRun):
                await self._finish(agent_id, channel, step)
            else:
                await self._append(agent_id, step)

    async def _finish(self, agent_id: str, channel: str, end: EndOfRun) -> None:
        # The bridge writes as bridge.owner, so it ends only that user's agents, as it appends only to them.
        agent = await self.store.get_agent(agent_id)
        if agent is None or agent.owner != self.owner:
            self._skip(channel, f"no agent {agent_id!r} of user {self.owner!r} to end")
            return
        try:
            await self.store.update_agent(agent_id, status=end.status, name=None, labels=None, reason=end.reason)
        except ApiError as exc:
            self._skip(channel, exc.message)

    async def _append(self, agent_id: str, lines: list[NewLine]) -> None:
        try:
            await self.store.append_lines(agent_id, self.owner, lines, may_write_any=False)
        except ApiError as exc:
            log.warning("bridge: %d lines of agent %s not stored: %s", len(lines), agent_id, exc.message)
