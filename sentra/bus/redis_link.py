"""What Sentra's Redis clients share: connecting, hiding passwords, and a subscription known to be alive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

MIN_BACKOFF = 0.05
MAX_BACKOFF = 2.0
CONNECT_TIMEOUT = 3.0
PING_EVERY = 5.0  # an idle subscription is pinged; no answer for 3 pings means the link is dead


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast instead of retrying, since the bus does its own reconnecting.

    RESP2: with redis-py 8's default RESP3, a message published just after a re-subscription to a restarted
    Redis was sometimes never returned by get_message (a stray PONG came instead) in the restart tests.
    """
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )


async def close_pubsub(pubsub: PubSub) -> None:
    """Disconnect a subscription."""
    # redis-py typed PubSub.aclose only in 8.2: calling it through a typed name checks with either release,
    # where an ignore for the untyped call would be reported unused by the newer one.
    aclose: Callable[[], Awaitable[None]] = pubsub.aclose
    await aclose()


class LiveLink:
    """Reads a subscription, pinging it when idle, and raises TimeoutError once Redis stopped answering."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self.heard = asyncio.get_running_loop().time()

    async def next(self) -> dict[str, Any]:
        """The next message (a subscribe confirmation, a message or a pong)."""
        loop = asyncio.get_running_loop()
        while True:
            message = await self.pubsub.get_message(timeout=PING_EVERY)
            now = loop.time()
            if message is not None:
                self.heard = now
                return dict(message)
            if now - self.heard > 3 * PING_EVERY:
                raise TimeoutError(f"no answer from Redis for {now - self.heard:.0f} s")
            await self.pubsub.ping()
