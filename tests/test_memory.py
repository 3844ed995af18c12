"""When the server hands memory back: only after many closes, most of what was open gone, and a quiet moment."""

from __future__ import annotations

import asyncio

from sentra import memory
from sentra.memory import MemoryReturn


async def test_memory_is_released_once_most_connections_closed_and_the_closing_stopped() -> None:
    returner = MemoryReturn(after=3)
    for still_open in (10, 9, 8):
        returner.connection_closed(still_open)
    await asyncio.sleep(memory.QUIET_SECONDS * 2)
    assert returner.releases == 0, "3 closed while 8 stay open: a full collection would scan them for little"
    for still_open in range(7, -1, -1):
        returner.connection_closed(still_open)
        await asyncio.sleep(memory.QUIET_SECONDS / 5)
    assert returner.releases == 0, "closes still coming put the release off"
    await asyncio.sleep(memory.QUIET_SECONDS * 2)
    assert returner.releases == 1
    assert returner.closed_since == 0


async def test_zero_means_memory_is_never_released_by_closes() -> None:
    returner = MemoryReturn(after=0)
    for still_open in range(100, -1, -1):
        returner.connection_closed(still_open)
    await asyncio.sleep(memory.QUIET_SECONDS * 2)
    assert returner.releases == 0
