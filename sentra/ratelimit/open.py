"""The ingest rate limiter the configuration asks for: none, a token bucket in this process, or one shared in
Redis. The Redis limiter is imported here lazily, so it imports only the bucket below it and redis-py loads only when
a setting asks for it."""

from __future__ import annotations

from sentra.config import Config, missing_extra
from sentra.ratelimit.local import RateLimiter, TokenBucket


def rate_limiter_from_config(config: Config) -> RateLimiter | None:
    """None without a limit; a bucket in this process with bus.url = memory://, else one shared in Redis."""
    rate = config["limits.ingest_rate"]
    if rate <= 0:
        return None
    if config["bus.url"] == "memory://":
        return TokenBucket(rate)
    try:
        from sentra.ratelimit.redis_limit import RedisRateLimiter
    except ImportError as exc:
        raise missing_extra("bus.url", exc) from None

    return RedisRateLimiter(config["bus.url"], rate, prefix=config["bus.prefix"])
