"""The writer in front of each storage: callers that stop waiting (a cancelled maintenance task at shutdown, a
request whose task was cancelled) neither stop it nor undo their writes, and the storage still closes cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sentra.line_values import NewLines
from sentra.lines import NewLine
from sentra.storage.appends import AppendJob
from sentra.storage.base import Storage
from sentra.storage.postgres import PostgresStore
from sentra.storage.sqlite import Store
from sentra.storage.write_queue import GATHER_BELOW


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


def _job(agent_id: str) -> AppendJob:
    return AppendJob(agent_id, "alice", False, NewLines.of(new_lines(1)), None, "", {})


async def _commit_sizes(storage: Storage, waiting: int) -> list[int]:
    """Lines per commit when `waiting` one-line writes are queued and one more comes in the event loop's next
    turn, as the next request of a client the last commit answered does."""
    await storage.append_lines("first", "alice", new_lines(1))
    await asyncio.wait_for(storage.drain(), 10)  # the writer waits for work, as between requests
    commits: list[int] = []
    storage.on_commit = lambda lines, _seconds: commits.append(lines)
    written = [storage.queue_append(_job(f"run-{n}")) for n in range(waiting)]
    asyncio.get_running_loop().call_soon(lambda: written.append(storage.queue_append(_job("late"))))
    await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*written), 10)
    return commits


async def test_a_write_that_comes_while_a_few_wait_joins_their_commit(storage: Storage) -> None:
    assert await _commit_sizes(storage, 2) == [3]


async def test_a_lone_write_is_committed_at_once(storage: Storage) -> None:
    assert await _commit_sizes(storage, 1) == [1, 1]


async def test_a_long_queue_is_committed_without_waiting_for_more(storage: Storage) -> None:
    assert await _commit_sizes(storage, GATHER_BELOW) == [GATHER_BELOW, 1]
