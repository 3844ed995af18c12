"""RedisRateLimiter against a real redis-server: one allowance per key for every process, and a local fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis_service import RedisServer

from sentra.ratelimit import redis_limit
from sentra.ratelimit.redis_limit import RedisRateLimiter

pytestmark = pytest.mark.slow  # Redis


@pytest.fixture
async def limiters(redis_url: str, bus_prefix: str) -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    """Two limiters at 10 lines/s, as two processes of one deployment would have."""
    a = RedisRateLimiter(redis_url, 10, prefix=bus_prefix)
    b = RedisRateLimiter(redis_url, 10, prefix=bus_prefix)
    yield a, b
    await a.close()
    await b.close()


async def test_two_processes_share_one_allowance(limiters: tuple[RedisRateLimiter, RedisRateLimiter]) -> None:
    a, b = limiters
    assert await a.take("alice", 6) == 0
    assert await b.take("alice", 4) == 0
    wait = await a.take("alice", 5)
    assert 0.4 < wait <= 0.5
    # Another key has its own allowance.
    assert await b.take("bob", 10) == 0


async def test_a_batch_above_the_burst_passes_once_full_and_leaves_debt_for_all(
    limiters: tuple[RedisRateLimiter, RedisRateLimiter], redis_url: str, bus_prefix: str
) -> None:
    a, b = limiters
    assert await a.take("alice", 25) == 0
    wait = await b.take("alice", 1)
    assert 1.5 < wait <= 1.6
    await asyncio.sleep(0.3)
    assert 1.2 < await a.take("alice", 1) <= 1.3
    client = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await client.pttl(f"{bus_prefix}:rate:alice")
    finally:
        await client.aclose()
    # The key outlives the debt plus a refill, then goes.
    assert 2000 < ttl <= 3600


async def test_redis_down_falls_back_to_a_local_bucket_with_one_warning(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_limit, "RETRY_REDIS_AFTER", 0.2)
    a = RedisRateLimiter(own_redis.url, 10, prefix="fallback")
    b = RedisRateLimiter(own_redis.url, 10, prefix="fallback")
    try:
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="sentra.ratelimit"):
            assert await a.take("alice", 10) == 0
            assert await a.take("alice", 5) > 0
            # Past RETRY_REDIS_AFTER Redis is tried again, still down: no second warning.
            await asyncio.sleep(0.3)
            assert await a.take("alice", 5) > 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "cannot be reached" in warnings[0].getMessage()
        # Each process limits on its own meanwhile: B's bucket is still full.
        assert await b.take("alice", 10) == 0
        own_redis.start()
        await asyncio.sleep(0.3)
        assert await a.take("alice", 10) == 0
        assert await b.take("alice", 1) > 0
    finally:
        await a.close()
        await b.close()
