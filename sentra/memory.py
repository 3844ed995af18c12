"""The process's memory and its collector: opened connections frozen in bulk, and memory handed back to the system
after many close (a full collection, then glibc's malloc_trim)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("sentra")
QUIET_SECONDS = 0.25  # closes still coming in this window put the release off
# An open stream keeps ~50 of the collector's container objects alive. A young collection looks at each one
# (~450 ns apiece with 10,000 streams open, a quarter of the server's time opening them) only to find it alive:
# gc.freeze() instead moves every tracked object out of the young generations at once. At 50,000 allocations
# between young collections (sentra.serve.GC_THRESHOLDS), 200 streams' objects never fill one.
FREEZE_EVERY = 200
# A freeze also takes along whatever garbage cycles were young at that moment. When no release comes (closes never
# quiet down, or releases are off) a full collection after this many freezes (10,000 opens) bounds them, at most
# once a COLLECT_SECONDS: with 10,000 streams open it holds the event loop for 0.3-0.45 s, and in the benchmark's
# open-close rounds it found nothing (closed streams are freed by their reference counts).
COLLECT_EVERY = 50
COLLECT_SECONDS = 60.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def resident_bytes() -> int | None:
    """This process's resident memory, or None where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class MemoryReturn:
    """Counts closed connections; once `after` have closed, at least as many as are still open, and none closed
    for QUIET_SECONDS, it collects cycles and returns the C heap's free pages. Without it about half the memory of
    10,000 closed streams stayed with the process (Python frees objects into its heap, which keeps the pages).

    With `freeze` (for a process whose collector is the server's alone: the CLI's), it also freezes the objects
    of every FREEZE_EVERY opened connections; reference counts still free them when a connection closes, and the
    frozen cycles are collected at each release, or after COLLECT_EVERY freezes and COLLECT_SECONDS without one.
    """

    def __init__(self, after: int, *, freeze: bool = False) -> None:
        self.after = after
        self.freeze = freeze
        self.opened_since = 0
        self.freezes = 0
        self._collected_at = time.monotonic()
        self.closed_since = 0
        self.releases = 0
        self._last_close = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()

    def connection_opened(self) -> None:
        """Called for every accepted connection."""
        if not self.freeze:
            return
        self.opened_since += 1
        if self.opened_since < FREEZE_EVERY:
            return
        self.opened_since = 0
        gc.freeze()
        self.freezes += 1
        if self.freezes >= COLLECT_EVERY and time.monotonic() - self._collected_at >= COLLECT_SECONDS:
            self.collect()

    def collect(self) -> None:
        """A full collection, the frozen objects included (they are frozen again after it)."""
        if self.freeze:
            gc.unfreeze()
        gc.collect()
        self._collected_at = time.monotonic()
        if self.freeze:
            gc.freeze()
            self.freezes = 0

    def connection_closed(self, still_open: int) -> None:
        """Called for every closed connection with the number still open."""
        if self.after <= 0:
            return
        self.closed_since += 1
        self._last_close = time.monotonic()
        # A full collection scans every live object: only worth it once most of what was open has gone.
        if self._timer is None and self.closed_since >= max(self.after, still_open):
            self._timer = asyncio.get_running_loop().call_later(QUIET_SECONDS, self._when_quiet)

    def _when_quiet(self) -> None:
        waited = time.monotonic() - self._last_close
        if waited < QUIET_SECONDS:
            self._timer = asyncio.get_running_loop().call_later(QUIET_SECONDS - waited, self._when_quiet)
            return
        self._timer = None
        self.release()

    def release(self) -> None:
        """Collect every generation and trim the C heap now."""
        closed, self.closed_since = self.closed_since, 0
        before, started = resident_bytes(), time.perf_counter()
        self.collect()
        if self._trim is not None:
            self._trim(0)
        self.releases += 1
        after = resident_bytes()
        if before is not None and after is not None:
            log.info(
                "%d connections closed: resident memory %.0f -> %.0f MB (%.0f ms)",
                closed,
                before / 2**20,
                after / 2**20,
                (time.perf_counter() - started) * 1000,
            )

    def cancel(self) -> None:
        """Drop a pending release (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
