"""The writer in front of each storage: callers that stop waiting (a cancelled maintenance task at shutdown, a
request whose task was cancelled) neither stop it nor undo their writes, and the storage still closes cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sentra.lines import NewLine
from sentra.storage.base import Storage
from sentra.storage.postgres import PostgresStore
from sentra.storage.sqlite import Store


def new_lines(count: int) -> list[NewLine]:
    return [NewLine(time.time(), "INFO", f"line {n}", "stdout", {}) for n in range(count)]


@pytest.fixture
async def sqlite_storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = Store(tmp_path / "sentra.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def postgresql_storage(pg_url: str) -> AsyncIterator[Storage]:
    store = PostgresStore(pg_url)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite_storage", pytest.param("postgresql_storage", marks=pytest.mark.slow)])
def storage(request: pytest.FixtureRequest) -> Storage:
    opened: Storage = request.getfixturevalue(request.param)
    return opened


async def test_callers_that_stop_waiting_do_not_stop_the_writer(storage: Storage) -> None:
    await storage.append_lines("run-1", "alice", new_lines(1))
    rename = asyncio.create_task(storage.update_agent("run-1", status=None, name="renamed", labels=None, reason=None))
    append = asyncio.create_task(storage.append_lines("run-1", "alice", new_lines(2)))
    await asyncio.sleep(0)  # both are queued
    rename.cancel()
    append.cancel()
    # The writer goes on: the abandoned writes are done, and the next one is answered.
    later = await asyncio.wait_for(storage.append_lines("run-1", "alice", new_lines(1)), 10)
    assert (later.first_seq, later.last_seq) == (4, 4)
    agent = await storage.get_agent("run-1")
    assert agent is not None and agent.name == "renamed" and agent.last_seq == 4
    await asyncio.wait_for(storage.drain(), 10)


async def test_an_empty_append_beside_others_stores_nothing_and_fails_nothing(storage: Storage) -> None:
    # Queued without a pause in between: one group commit with an empty job between two others.
    first, empty, last = await asyncio.gather(
        storage.append_lines("beside", "alice", new_lines(2)),
        storage.append_lines("beside", "alice", []),
        storage.append_lines("beside", "alice", new_lines(1)),
    )
    assert (first.accepted, first.first_seq, first.last_seq) == (2, 1, 2)
    assert (empty.accepted, empty.last_seq) == (0, 2)
    assert (last.accepted, last.first_seq, last.last_seq) == (1, 3, 3)
    agent = await storage.get_agent("beside")
    assert agent is not None and agent.last_seq == 3
    assert agent.summary.counts == (0, 3, 0, 0, 0)
