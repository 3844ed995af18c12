"""Counting, in the background, the lines a database made before run summaries holds (one slice per transaction,
so ingest waits at most one slice), until every agent's summary covers its stored lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("sentra.store")
RETRY_DELAY = 5.0  # seconds after a failed slice (the database is busy or down); the next slice starts over


class SummaryBackfill:
    """Calls `step` until it answers False (nothing left), yielding to the event loop between slices."""

    def __init__(self, step: Callable[[], Awaitable[bool]]) -> None:
        self._step = step
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin in the background."""
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop (a later start carries on where this one stopped)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if not await self._step():
                    break
            except Exception as exc:  # a failed slice is retried; the summaries stay as they were
                log.warning("counting stored lines for run summaries failed, retrying: %s", exc)
                await asyncio.sleep(RETRY_DELAY)
            await asyncio.sleep(0)
