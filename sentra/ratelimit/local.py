"""Ingest rate limits in this process: the RateLimiter interface and its lines-per-second token bucket per token."""

from __future__ import annotations

import time
from typing import Protocol

BUCKETS_BEFORE_PRUNE = 10000


class RateLimiter(Protocol):
    """Lines-per-second allowance per key, with a burst of one second's worth."""

    rate: int

    async def take(self, key: str, amount: int) -> float:
        """Take `amount` lines; returns 0, or the seconds to wait before retrying."""

    async def close(self) -> None:
        """Release connections, if any."""


class TokenBucket:
    """Lines-per-second allowance per token, with a burst of one second's worth."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, amount: int) -> float:
        """Take `amount` lines; returns 0, or the seconds to wait before retrying.

        A batch larger than the burst is let through once the allowance is full, leaving the bucket in
        debt, so big batches are slowed to the rate rather than refused forever.
        """
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - stamp) * self.rate)
        needed = min(float(amount), float(self.rate))
        if tokens < needed:
            self._buckets[key] = (tokens, now)
            return (needed - tokens) / self.rate
        self._buckets[key] = (tokens - amount, now)
        if len(self._buckets) > BUCKETS_BEFORE_PRUNE:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: forget it, so memory follows active tokens.
        full = [
            key for key, (tokens, stamp) in self._buckets.items() if tokens + (now - stamp) * self.rate >= self.rate
        ]
        for key in full:
            del self._buckets[key]

    async def close(self) -> None:
        """Nothing to release: the buckets live in this process."""
