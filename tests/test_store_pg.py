"""PostgresStore on a real PostgreSQL: two stores (as two processes would) on one database, and the same
answers and errors as the SQLite store."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sentra.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from sentra.lines import Line, NewLine
from sentra.models import Agent
from sentra.storage.base import LineQuery
from sentra.storage.postgres import PostgresStore, mask_password, revoke_token_pg
from sentra.storage.sqlite import Store
from sentra.storage.words import words_of

pytestmark = pytest.mark.slow  # PostgreSQL

StoreFactory = Callable[..., Awaitable[PostgresStore]]


def new_lines(count: int, prefix: str = "line", level: str = "INFO") -> list[NewLine]:
    """`count` lines with numbered messages."""
    return [NewLine(time.time(), level, f"{prefix} {n}", "stdout", {"n": n}) for n in range(count)]


class Recorder:
    """A commit listener that remembers what it heard, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    def lines_committed(self, agent: Agent, lines: list[Line]) -> None:
        self.events.append(("lines", agent.id, [line.seq for line in lines]))

    def agent_changed(self, agent: Agent) -> None:
        self.events.append(("changed", agent.id, agent.status))

    def agent_deleted(self, agent: Agent) -> None:
        self.events.append(("deleted", agent.id, None))


@contextmanager
def unused_port() -> Iterator[int]:
    """A loopback port nobody listens on, for the duration of the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def open_store(pg_url: str) -> AsyncIterator[StoreFactory]:
    """A factory of opened PostgresStores on this test's database, closed at the end."""
    stores: list[PostgresStore] = []

    async def make(**kwargs: Any) -> PostgresStore:
        store = PostgresStore(pg_url, commit_max_lines=kwargs.pop("commit_max_lines", 20000))
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def test_two_stores_ingesting_one_agent_give_gap_free_seqs(open_store: StoreFactory) -> None:
    # Opened at once, as two processes starting together would: both create the schema if missing.
    a, b = await asyncio.gather(open_store(), open_store())

    async def ingest(store: PostgresStore, task: int) -> list[tuple[int, int, str]]:
        answers = []
        for request in range(5):
            prefix = f"{id(store)}-{task}-{request}"
            result = await store.append_lines("shared", "alice", new_lines(10, prefix))
            assert result.accepted == 10 and result.first_seq is not None and result.last_seq is not None
            assert result.last_seq - result.first_seq == 9
            answers.append((result.first_seq, result.last_seq, prefix))
        return answers

    answers = await asyncio.gather(*(ingest(store, n) for store in (a, b) for n in range(20)))
    ranges = sorted(r for task in answers for r in task)
    total = 2 * 20 * 5 * 10
    assert [first for first, _, _ in ranges] == list(range(1, total + 1, 10))
    agent = await b.get_agent("shared")
    assert agent is not None and agent.last_seq == total
    stored: list[Line] = []
    while len(stored) < total:
        stored += await a.lines_after(agent, stored[-1].seq if stored else 0, limit=777)
    assert [line.seq for line in stored] == list(range(1, total + 1))
    for first, _, prefix in ranges:
        assert [line.message for line in stored[first - 1 : first + 9]] == [f"{prefix} {n}" for n in range(10)]


async def test_batches_over_two_agents_in_opposite_orders_all_commit(open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    calls = []
    for n in range(30):
        first, second = ("x", "y") if n % 2 else ("y", "x")
        for store in (a, b):
            calls += [
                store.append_lines(first, "alice", new_lines(3)),
                store.append_lines(second, "alice", new_lines(3)),
            ]
    results = await asyncio.gather(*calls)
    assert all(result.accepted == 3 for result in results)
    for agent_id in ("x", "y"):
        agent = await a.get_agent(agent_id)
        assert agent is not None and agent.last_seq == 180
        assert [line.seq for line in await a.lines_after(agent, 0)] == list(range(1, 181))


async def test_idempotency_key_retried_on_the_other_process_replays_the_answer(open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    await a.append_lines("job", "alice", new_lines(2))
    first = await a.append_lines("job", "alice", new_lines(3), idempotency_key="k1")
    again = await b.append_lines("job", "alice", new_lines(3), idempotency_key="k1")
    assert (first.accepted, first.first_seq, first.last_seq, first.replayed) == (3, 3, 5, False)
    assert (again.accepted, again.first_seq, again.last_seq, again.replayed) == (3, 3, 5, True)
    concurrent = await asyncio.gather(
        *(store.append_lines("job", "alice", new_lines(4), idempotency_key="k2") for store in (a, b, a, b))
    )
    assert sorted(result.replayed for result in concurrent) == [False, True, True, True]
    assert {(result.first_seq, result.last_seq) for result in concurrent} == {(6, 9)}
    agent = await b.get_agent("job")
    assert agent is not None and agent.last_seq == 9
    assert len(await b.lines_after(agent, 0)) == 9


async def test_first_ingest_creates_the_agent_with_name_and_labels(open_store: StoreFactory) -> None:
    store = await open_store()
    await store.append_lines("new", "alice", new_lines(1), name="Crawler", labels={"team": "ml", "env": "prod"})
    agent = await store.get_agent("new")
    assert agent is not None
    assert (agent.owner, agent.name, agent.status, agent.labels) == (
        "alice",
        "Crawler",
        "running",
        {"env": "prod", "team": "ml"},
    )
    assert list(agent.labels) == ["env", "team"]
    assert (agent.first_seq, agent.last_seq, agent.line_count) == (1, 1, 1)


async def test_finished_agent_refuses_lines_and_status_changes(open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    await a.append_lines("done", "alice", new_lines(1))
    await a.update_agent("done", status="completed", name=None, labels=None, reason=None)
    with pytest.raises(Conflict) as refused:
        await b.append_lines("done", "alice", new_lines(1))
    assert refused.value.code == "agent_finished"
    assert refused.value.message == "agent 'done' is completed; a finished agent takes no more lines"
    with pytest.raises(Conflict) as changed:
        await b.update_agent("done", status="failed", name=None, labels=None, reason="late")
    assert changed.value.message == "agent 'done' is completed; a finished agent cannot change status"
    renamed = await b.update_agent("done", status=None, name="renamed", labels={"k": "v"}, reason=None)
    assert (renamed.status, renamed.name, renamed.labels) == ("completed", "renamed", {"k": "v"})


async def test_ownership_and_existence_errors_match_sqlite(open_store: StoreFactory) -> None:
    store = await open_store()
    await store.create_agent("mine", "alice", "", {})
    with pytest.raises(Forbidden) as forbidden:
        await store.append_lines("mine", "bob", new_lines(1))
    assert (forbidden.value.code, forbidden.value.message) == ("not_owner", "agent 'mine' belongs to another user")
    assert (await store.append_lines("mine", "admin", new_lines(1), may_write_any=True)).first_seq == 1
    with pytest.raises(Conflict) as exists:
        await store.create_agent("mine", "bob", "", {})
    assert (exists.value.code, exists.value.message) == ("agent_exists", "agent 'mine' already exists")
    await store.delete_agent("mine")
    assert await store.get_agent("mine") is None
    with pytest.raises(NotFound) as gone:
        await store.update_agent("mine", status="completed", name=None, labels=None, reason=None)
    assert (gone.value.code, gone.value.message) == ("agent_not_found", "agent 'mine' was deleted")


async def test_one_bad_request_in_a_batch_fails_alone(open_store: StoreFactory) -> None:
    store = await open_store()
    await store.create_agent("alices", "alice", "", {})
    results = await asyncio.gather(
        store.append_lines("alices", "alice", new_lines(2)),
        store.append_lines("alices", "bob", new_lines(2)),
        store.append_lines("alices", "alice", new_lines(2)),
        return_exceptions=True,
    )
    assert isinstance(results[1], Forbidden)
    assert [(r.first_seq, r.last_seq) for r in (results[0], results[2]) if not isinstance(r, BaseException)] == [
        (1, 2),
        (3, 4),
    ]


async def test_retention_trims_lines_and_deletes_old_finished_agents(open_store: StoreFactory) -> None:
    store = await open_store()
    await store.append_lines("long", "alice", new_lines(25))
    await store.append_lines("old", "alice", new_lines(1))
    await store.update_agent("old", status="failed", name=None, labels=None, reason="boom")
    assert await store.enforce_retention(10, 0, 3600) == 1
    agent = await store.get_agent("long")
    assert agent is not None and (agent.first_seq, agent.last_seq, agent.line_count) == (16, 25, 10)
    assert [line.seq for line in await store.lines_after(agent, 0)] == list(range(16, 26))
    await asyncio.sleep(0.05)
    assert await store.enforce_retention(0, 0.01, 3600) == 1
    assert await store.get_agent("old") is None
    assert await store.get_agent("long") is not None


async def test_list_agents_filters_by_owner_status_labels_and_page(open_store: StoreFactory) -> None:
    store = await open_store()
    await store.create_agent("a1", "alice", "", {"team": "ml", "env": "prod"})
    await store.create_agent("a2", "alice", "", {"team": "ml"})
    await store.create_agent("b1", "bob", "", {"team": "ml", "env": "prod"})
    await store.update_agent("a2", status="completed", name=None, labels=None, reason=None)

    async def ids(owner: str | None, **kwargs: Any) -> list[str]:
        return [agent.id for agent in await store.list_agents(owner, **kwargs)]

    assert await ids(None) == ["b1", "a2", "a1"]
    assert await ids("alice") == ["a2", "a1"]
    assert await ids("alice", status="running") == ["a1"]
    assert await ids(None, labels={"env": "prod"}) == ["b1", "a1"]
    assert await ids(None, labels={"env": "prod", "team": "ml"}) == ["b1", "a1"]
    assert await ids(None, labels={"env": "dev"}) == []
    assert await ids(None, limit=1) == ["b1"]
    b1 = (await store.list_agents(None, limit=1))[0]
    assert await ids(None, before_pk=b1.pk) == ["a2", "a1"]


async def test_search_and_level_filters_agree_with_sqlite(open_store: StoreFactory, tmp_path: Path) -> None:
    messages = [
        "Hello WORLD",
        "hello world",
        "ÉCOLE école",
        "Straße STRASSE",
        "İstanbul ıi",
        "Ǆ ǆ ǅ",
        "ΣΊΣΥΦΟΣ σίσυφος",
        "nul \x00 inside",
        "\uffff0 escape-like",
        "100% _under_ %",
    ]
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    batch = [NewLine(1.0 + n, levels[n % 5], text, "src\x00", {"n": n}) for n, text in enumerate(messages)]
    pg = await open_store()
    sqlite = Store(tmp_path / "same.db")
    await sqlite.open()
    try:
        for store in (pg, sqlite):
            await store.append_lines("search", "alice", batch)
        pg_agent, sqlite_agent = await pg.get_agent("search"), await sqlite.get_agent("search")
        assert pg_agent is not None and sqlite_agent is not None
        assert await pg.lines_after(pg_agent, 0) == await sqlite.lines_after(sqlite_agent, 0)
        queries = [
            "hello",
            "WORLD",
            "école",
            "ÉCOLE",
            "é",
            "É",
            "ss",
            "ß",
            "i",
            "İ",
            "ı",
            "ǅ",
            "σ",
            "Σ",
            "%",
            "_",
            "0",
            "\uffff",
            "\x00",
            "l \x00 i",
            "\uffff0",
        ]
        for q in queries:
            if not words_of(q):
                continue  # a q that holds no word is refused (400)
            for min_level in (0, 30):
                query = LineQuery(min_level=min_level, q=q)
                expected = [line.seq for line in await sqlite.lines_after(sqlite_agent, 0, query=query)]
                assert [line.seq for line in await pg.lines_after(pg_agent, 0, query=query)] == expected, q
                before = [line.seq for line in await pg.lines_before(pg_agent, 11, limit=2, query=query)]
                assert before == [
                    line.seq for line in await sqlite.lines_before(sqlite_agent, 11, limit=2, query=query)
                ]
    finally:
        await sqlite.close()


async def test_revocation_is_seen_by_revoked_since(open_store: StoreFactory, pg_url: str) -> None:
    store = await open_store()
    assert await store.revoked_since(0) == []
    await revoke_token_pg(pg_url, "jti-1")
    await revoke_token_pg(pg_url, "jti-2")
    await revoke_token_pg(pg_url, "jti-1")
    revoked = await store.revoked_since(0)
    assert [jti for _, jti in revoked] == ["jti-1", "jti-2"]
    assert await store.revoked_since(revoked[0][0]) == revoked[1:]


async def test_idle_running_agents_are_failed_with_reason_timeout(open_store: StoreFactory) -> None:
    store = await open_store()
    await store.append_lines("idle", "alice", new_lines(1))
    await store.append_lines("done", "alice", new_lines(1))
    await store.update_agent("done", status="completed", name=None, labels=None, reason=None)
    await asyncio.sleep(0.3)
    await store.append_lines("busy", "alice", new_lines(1))
    assert await store.fail_idle_agents(0.2) == ["idle"]
    agent = await store.get_agent("idle")
    assert agent is not None and (agent.status, agent.reason) == ("failed", "timeout")


async def test_listener_hears_every_commit_in_order(open_store: StoreFactory) -> None:
    store = await open_store()
    recorder = Recorder()
    store.listener = recorder
    await store.append_lines("heard", "alice", new_lines(2))
    await asyncio.gather(*(store.append_lines("heard", "alice", new_lines(1)) for _ in range(3)))
    await store.update_agent("heard", status="completed", name=None, labels=None, reason=None)
    await store.delete_agent("heard")
    # Appends committed together may come as one notice per agent; the seqs arrive in order either way.
    lines = [event for event in recorder.events if event[0] == "lines"]
    assert lines[0] == ("lines", "heard", [1, 2])
    assert [seq for _, _, seqs in lines for seq in seqs] == [1, 2, 3, 4, 5]
    others = [event for event in recorder.events if event[0] != "lines"]
    assert others == [("changed", "heard", "running"), ("changed", "heard", "completed"), ("deleted", "heard", None)]
    assert recorder.events[0] == ("changed", "heard", "running")
    assert recorder.events[-2:] == others[-2:]


async def test_cached_agent_keeps_the_newest_record_seen(open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    await a.append_lines("seen", "alice", new_lines(2))
    assert b.cached_agent("seen") is None
    await b.append_lines("seen", "alice", new_lines(3))
    newer = b.cached_agent("seen")
    assert newer is not None and newer.last_seq == 5
    stale = a.cached_agent("seen")
    assert stale is not None and stale.last_seq == 2
    assert a.observe_agent(newer) is newer and a.observe_agent(stale) is newer
    fresh = await a.get_agent("seen")
    assert fresh is not None and fresh.last_seq == 5


async def test_lost_writer_connection_fails_only_the_batch_in_flight(open_store: StoreFactory, pg_url: str) -> None:
    store = await open_store(commit_max_lines=400)
    await store.append_lines("drop", "alice", new_lines(1))
    admin = await asyncpg.connect(pg_url)
    try:

        async def keep_ingesting() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(store.append_lines("drop", "alice", new_lines(200)) for _ in range(60)), return_exceptions=True
                )
            )

        ingesting = asyncio.create_task(keep_ingesting())
        await asyncio.sleep(0.05)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'sentra-writer' AND datname = current_database()"
        )
        assert killed == 1
        results = await asyncio.wait_for(ingesting, 30)
    finally:
        await admin.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, ServiceUnavailable) for r in failed), failed
    # Two requests of 200 lines fill a group commit: at most one batch was lost with the connection.
    assert len(failed) <= 2
    after = await store.append_lines("drop", "alice", new_lines(1))
    acknowledged = sorted((r.first_seq, r.last_seq) for r in results if not isinstance(r, BaseException))
    agent = await store.get_agent("drop")
    assert agent is not None and agent.last_seq == after.last_seq == 2 + 200 * len(acknowledged)
    stored = await store.lines_after(agent, 0, limit=100_000)
    assert [line.seq for line in stored] == list(range(1, agent.last_seq + 1))


async def test_unreachable_database_is_an_oserror_without_the_password() -> None:
    with unused_port() as port:
        store = PostgresStore(f"postgresql://sentra:hunter2@127.0.0.1:{port}/db", commit_max_lines=10)
        assert store.description == f"postgresql://sentra:***@127.0.0.1:{port}/db"
        with pytest.raises(OSError) as refused:
            await store.open()
    assert "hunter2" not in str(refused.value)
    assert str(refused.value).startswith(f"cannot connect to postgresql://sentra:***@127.0.0.1:{port}/db: ")
    assert mask_password("postgresql://h/db?password=x&sslmode=off") == "postgresql://h/db?password=***&sslmode=off"
