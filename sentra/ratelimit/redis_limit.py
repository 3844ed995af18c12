"""RedisRateLimiter: TokenBucket's allowance kept in Redis, so every process of a deployment shares it per key.

One Lua script reads, refills and takes from the bucket atomically, timed by Redis's clock (processes' clocks
may disagree). While Redis cannot be reached each process falls back to a bucket of its own.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from sentra.bus.redis_link import connect, redacted
from sentra.ratelimit.local import TokenBucket

log = logging.getLogger("sentra.ratelimit")

RETRY_REDIS_AFTER = 5.0  # seconds on the local bucket before Redis is tried again

# KEYS[1] bucket; ARGV rate, amount. Returns the seconds to wait, as a string (Lua numbers become integers).
TAKE = """
local rate = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or rate
local stamp = tonumber(state[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - stamp) * rate)
local needed = math.min(amount, rate)
local wait = 0
if tokens < needed then
  wait = (needed - tokens) / rate
else
  tokens = tokens - amount
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'stamp', string.format('%.6f', now))
-- A bucket that has refilled is the same as no bucket: let it expire then.
redis.call('PEXPIRE', KEYS[1], math.ceil((rate - tokens) / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RedisRateLimiter:
    """Lines-per-second allowance per key shared through Redis, with a burst of one second's worth."""

    def __init__(self, url: str, rate: int, *, prefix: str = "sentra") -> None:
        self.url = url
        self.rate = rate
        self.prefix = prefix
        self._client = connect(url)
        self._take = self._client.register_script(TAKE)
        self._local = TokenBucket(rate)
        self._local_until = 0.0

    async def take(self, key: str, amount: int) -> float:
        """Take `amount` lines; returns 0, or the seconds to wait before retrying.

        A batch larger than the burst is let through once the allowance is full, leaving the bucket in
        debt, as TokenBucket does.
        """
        if time.monotonic() >= self._local_until:
            try:
                wait = await self._take(keys=[f"{self.prefix}:rate:{key}"], args=[self.rate, amount])
            except (RedisError, OSError) as exc:
                if not self._local_until:
                    log.warning(
                        "rate limits: Redis at %s cannot be reached (%s); each process limits on its own meanwhile",
                        redacted(self.url),
                        exc,
                    )
                self._local_until = time.monotonic() + RETRY_REDIS_AFTER
            else:
                if self._local_until:
                    log.info("rate limits: shared through Redis again")
                    self._local_until = 0.0
                return float(wait)
        return await self._local.take(key, amount)

    async def close(self) -> None:
        """Disconnect from Redis."""
        await self._client.aclose()
