"""When the server hands memory back: only after many closes, most of what was open gone, and a quiet moment."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from conftest import ServerFactory

from sentra import memory
from sentra.memory import MemoryReturn


@pytest.mark.slow  # waits for the memory release
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


class _Cycle:
    """Garbage only the cycle collector can free: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Freezing is process-wide: leave the test process's collector as it was."""
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def _garbage_cycle() -> weakref.ref[_Cycle]:
    cycle = _Cycle()
    return weakref.ref(cycle)


async def test_opened_connections_are_frozen_and_their_garbage_goes_at_the_next_release(unfrozen: None) -> None:
    returner = MemoryReturn(after=3, freeze=True)
    frozen = gc.get_freeze_count()
    garbage = _garbage_cycle()
    for _ in range(memory.FREEZE_EVERY):
        returner.connection_opened()
    assert gc.get_freeze_count() > frozen, "the opened connections' objects left the young generations"
    assert gc.get_count()[0] < 10, "a young collection finds nothing left to scan"
    gc.collect()
    assert garbage() is not None, "a frozen cycle waits for a release"
    for still_open in (2, 1, 0):
        returner.connection_closed(still_open)
    await asyncio.sleep(memory.QUIET_SECONDS * 2)
    assert returner.releases == 1
    assert garbage() is None, "the release collects what was frozen"
    assert gc.get_freeze_count() > 0, "and freezes what is still alive again"


def test_frozen_garbage_is_collected_even_when_connections_never_quiet_down(
    unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "COLLECT_SECONDS", 0.0)
    returner = MemoryReturn(after=0, freeze=True)
    garbage = _garbage_cycle()
    for _ in range(memory.FREEZE_EVERY * (memory.COLLECT_EVERY - 1)):
        returner.connection_opened()
    gc.collect()
    assert garbage() is not None
    for _ in range(memory.FREEZE_EVERY):
        returner.connection_opened()
    assert garbage() is None, f"{memory.COLLECT_EVERY} freezes without a release end in a full collection"
    assert returner.releases == 0, "memory is still never handed back with after = 0"


def test_full_collections_of_frozen_objects_are_spaced_in_time(unfrozen: None) -> None:
    returner = MemoryReturn(after=0, freeze=True)
    garbage = _garbage_cycle()
    for _ in range(memory.FREEZE_EVERY * memory.COLLECT_EVERY * 2):
        returner.connection_opened()
    gc.collect()
    assert garbage() is not None, f"no full collection sooner than {memory.COLLECT_SECONDS} s after the last one"


def test_without_freeze_the_collector_is_left_alone() -> None:
    returner = MemoryReturn(after=3)
    frozen = gc.get_freeze_count()
    for _ in range(memory.FREEZE_EVERY * 2):
        returner.connection_opened()
    assert gc.get_freeze_count() == frozen


async def test_the_server_freezes_what_its_opened_connections_hold(unfrozen: None, start_server: ServerFactory) -> None:
    server = await start_server(own_gc=True)
    frozen = gc.get_freeze_count()
    connections = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(memory.FREEZE_EVERY)]
    async with server.client() as client:
        assert (await client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() > frozen, f"{memory.FREEZE_EVERY} accepted connections end in a freeze"
    for _, writer in connections:
        writer.close()
        await writer.wait_closed()
