"""RedisBridge: ingests the Redis channels seed 001's agents publish to, so those agents need no change at all.

Each message on a channel matching bridge.channel_pattern (`browser_use_logs:<id>`) becomes a line of the agent
named by the part after the channel's last ':', owned by bridge.owner: a JSON object in seed 001's format (the
publisher's {"msg", "timestamp", "source", ...}, or the SSE event whose "data" holds level, message, source and
timestamp), any JSON object the ingest API reads, or plain text.

With several Sentra processes configured alike, exactly one ingests: the holder of a leader lock in Redis
(`<bus.prefix>:bridge:leader`, renewed every 1.5 s, expiring after 5 s). The others poll for the lock and take
over when the leader stops (at once on a clean shutdown, which releases the lock; within 5 s after a crash).

Redis pub/sub keeps nothing: a message published while no leader is subscribed (Sentra down, Redis
unreachable, or during a take-over) is not stored. Agents that need every line kept should POST to Sentra.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from sentra.config import Config
from sentra.errors import ApiError, BadRequest
from sentra.lines import NewLine, check_agent_id, line_from_object
from sentra.redis_link import MAX_BACKOFF, MIN_BACKOFF, LiveLink, close_pubsub, connect, redacted
from sentra.storage import Storage

log = logging.getLogger("sentra.bridge")

LOCK_TTL_MS = 5000
RENEW_EVERY = 1.5
MESSAGES_PER_BATCH = 1000
CLOSE_TIMEOUT = 5.0
WARNED_CHANNELS_KEPT = 1000

# KEYS[1] lock, ARGV[1] holder id, ARGV[2] ttl in ms: take the lock if free, or extend it if this process holds it
# (a renewal that failed on a broken connection must not make the holder wait for its own lock to expire).
TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def line_of_message(data: bytes, now: float, max_line_size: int) -> NewLine:
    """The line a published message stands for; raises ValueError if even its text is too large."""
    text = data.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
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
        self.owner: str = config["bridge.owner"]
        self.max_line_size: int = config["limits.max_line_size"]
        self.lock_key = f"{config['bus.prefix']}:bridge:leader"
        self.store = store
        self.holder = uuid.uuid4().hex
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
                taken = await self._take(keys=[self.lock_key], args=[self.holder, LOCK_TTL_MS])
                failing, delay = False, MIN_BACKOFF
                if taken:
                    await self._lead()
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
                    if not await self._take(keys=[self.lock_key], args=[self.holder, LOCK_TTL_MS]):
                        log.warning("bridge: lost the leader lock; another process ingests now")
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
            lines = self._lines_by_agent([item for item in batch if item["type"] == "pmessage"])
            if lines:
                # Shielded: a line handed to the store is committed even if the bridge stops meanwhile.
                self._appending = asyncio.ensure_future(
                    asyncio.gather(*(self._append(agent_id, new) for agent_id, new in lines.items()))
                )
                await asyncio.shield(self._appending)

    def _lines_by_agent(self, messages: list[dict[str, Any]]) -> dict[str, list[NewLine]]:
        now = time.time()
        lines: dict[str, list[NewLine]] = {}
        for message in messages:
            channel = message["channel"].decode("utf-8", errors="replace")
            try:
                agent_id = check_agent_id(channel.rsplit(":", 1)[-1])
                line = line_of_message(message["data"], now, self.max_line_size)
            except BadRequest as exc:
                self._skip(channel, exc.message)
                continue
            except ValueError as exc:
                self._skip(channel, str(exc))
                continue
            lines.setdefault(agent_id, []).append(line)
        return lines

    def _skip(self, channel: str, why: str) -> None:
        if channel not in self._warned and len(self._warned) < WARNED_CHANNELS_KEPT:
            self._warned.add(channel)
            log.warning("bridge: skipped a message on %r: %s", channel[:200], why)

    async def _append(self, agent_id: str, lines: list[NewLine]) -> None:
        try:
            await self.store.append_lines(agent_id, self.owner, lines, may_write_any=False)
        except ApiError as exc:
            log.warning("bridge: %d lines of agent %s not stored: %s", len(lines), agent_id, exc.message)
