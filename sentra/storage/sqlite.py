"""All SQL: agents, lines, idempotency keys and revoked tokens in one SQLite file, with group commit."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from sentra.errors import ApiError, ServiceUnavailable, StorageFull
from sentra.lines import Line, NewLine, NewLines
from sentra.models import Agent, AppendResult, CommitListener
from sentra.storage.agent_cache import AgentCache
from sentra.storage.appends import AppendJob
from sentra.storage.base import LineQuery, SearchQuery
from sentra.storage.checkpointer import Checkpointer
from sentra.storage.search_index import SEARCH_WAIT, IndexWriter
from sentra.storage.search_reads import LAST_SEQ, matching_lines, search_matching
from sentra.storage.shares import SqliteShares
from sentra.storage.sqlite_attachments import SqliteAttachments
from sentra.storage.sqlite_schema import AGENT_COLUMNS, SCHEMA, agent_from_row
from sentra.storage.sqlite_search import IndexWriterConnection
from sentra.storage.sqlite_search_reads import IndexReader, SqliteMatchSource
from sentra.storage.sqlite_summary import backfill_step, stored_seconds, volume_rows
from sentra.storage.sqlite_webhooks import SqliteWebhooks
from sentra.storage.sqlite_writer import WriteConnection
from sentra.storage.stops import request_stop_sqlite
from sentra.storage.summary_backfill import SummaryBackfill
from sentra.storage.write_queue import Task, WriteQueue, announce
from sentra.summary import RunSummary
from sentra.volume import buckets_json, run_span

log = logging.getLogger("sentra.store")
# A group commit of at most this many lines is made on the event loop (with synchronous=NORMAL it does not wait for
# the disk: ~1.2 us a line). In the writer thread each statement gives up the GIL and may wait a switch interval to
# take it back from the busy loop: 12 us a line instead of 1.2 (docs/performance.md, thirteenth round).
INLINE_COMMIT_LINES = 10_000
# About SQLite's own auto-checkpoint size (1000 pages): past this much committed, a checkpoint pass begins
# beside the commits.
CHECKPOINT_BYTES = 4 * 1024 * 1024
# Past this much WAL the writer copies what the passes left between two commits, and the WAL starts over.
WAL_RESTART_BYTES = 16 * 1024 * 1024


def _storage_error(exc: sqlite3.Error) -> ApiError:
    text = str(exc)
    if "full" in text:
        return StorageFull("the disk is full; nothing was written, retry when space is freed")
    return ServiceUnavailable(f"the database cannot be written: {text}")


class Store:
    """The one owner of the SQLite file: a writer thread fed by a queue, and a read connection."""

    def __init__(
        self, path: Path, *, synchronous: str = "NORMAL", commit_max_lines: int = 20000, search_index: bool = True
    ) -> None:
        self.path = path
        self.search_index = search_index
        self.commit_max_lines = commit_max_lines
        self.listener: CommitListener | None = None
        self.on_commit: Callable[[int, float], None] | None = None
        self._writer = WriteConnection(path, synchronous.upper())
        self._executor: ThreadPoolExecutor | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writes: WriteQueue[Callable[[], Any]] = WriteQueue(
            commit_max_lines, self._run_appends, self._run_task, self._after_each
        )
        self._agents = AgentCache()
        # With synchronous=FULL every commit waits for the disk: those stay off the event loop.
        self._inline = synchronous.upper() == "NORMAL"
        self._wal_bytes = 0
        self._checkpointer = Checkpointer(path, WAL_RESTART_BYTES)
        self.webhooks = SqliteWebhooks(self._writer, lambda: self.reader, self._writes.submit)
        self.attachments = SqliteAttachments(lambda: self.reader)
        self.shares = SqliteShares(lambda: self._writer.db, lambda: self.reader, self._writes.submit)
        self._index: IndexWriterConnection | None = None
        self._indexer: IndexWriter | None = None
        self._index_reader: IndexReader | None = None
        self._matches: SqliteMatchSource | None = None
        self.summaries = SummaryBackfill(self._count_uncounted)

    @property
    def description(self) -> str:
        """The database file, for the start-up banner."""
        return str(self.path)

    async def open(self) -> None:
        """Open (creating if needed) the database in WAL mode and start the writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentra-writer")
        await self._in_writer(self._writer.open)
        await self._checkpointer.open()
        self._reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=5000")
        if self.search_index:
            await self._open_index()
        self._matches = SqliteMatchSource(self._reader, self._index_reader)
        self._writes.start()
        self.summaries.start()

    async def _open_index(self) -> None:
        """Open the word index beside the database and start its writer (see storage/search_index.py)."""
        self._index = IndexWriterConnection(self.path)
        await self._index.open(self._writer.database_id)
        self._index_reader = IndexReader(self.path)
        await self._index_reader.open()
        self._indexer = IndexWriter(self._index, sees_every_commit=True)
        self._indexer.start()

    async def close(self) -> None:
        """Write everything queued, then close the connections and their threads."""
        await self.summaries.close()
        await self._writes.close()
        if self._indexer is not None:
            await self._indexer.close()
            self._indexer = None
        for index in (self._index_reader, self._index):
            if index is not None:
                await index.close()
        self._index_reader = self._index = None
        await self._checkpointer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._executor is not None:
            await self._in_writer(self._writer.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _in_writer(self, work: Callable[[], Any]) -> Any:
        assert self._executor is not None, "store is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write has committed (or failed) and been answered."""
        await self._writes.drain(timeout)

    # ---- reads -------------------------------------------------------------------------------

    @property
    def reader(self) -> aiosqlite.Connection:
        """The read-only connection (WAL lets it read while the writer writes)."""
        assert self._reader is not None, "store is not open"
        return self._reader

    async def check(self) -> None:
        """Raise if the database cannot be read (for /healthz)."""
        await _rows(self.reader, "SELECT 1 FROM agents LIMIT 1")

    async def get_agent(self, agent_id: str) -> Agent | None:
        """The agent with this id, from memory when it is hot."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._agents.move_to_end(agent_id)
            return agent
        rows = await _rows(self.reader, f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?", (agent_id,))
        if not rows:
            return None
        agent = agent_from_row(tuple(rows[0]))
        return self._remember(agent_id, agent)

    def cached_agent(self, agent_id: str) -> Agent | None:
        """The in-memory agent record, if loaded: always current, since this store is the only writer."""
        return self._agents.get(agent_id)

    def forget_agent(self, agent: Agent) -> None:
        """Another process deleted this agent: drop it from the cache unless a newer one took its id."""
        self._agents.forget(agent)

    def observe_agent(self, agent: Agent) -> Agent:
        """Keep an agent record committed elsewhere if it is newer (never happens: SQLite has one writer)."""
        return self._agents.newest(agent)

    def _remember(self, agent_id: str, agent: Agent) -> Agent:
        # A commit may have cached a newer record while this one was read: that one stays.
        return self._agents.get(agent_id) or self._agents.keep(agent)

    async def list_agents(
        self,
        owner: str | None,
        *,
        status: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 100,
        before_pk: int | None = None,
    ) -> list[Agent]:
        """Agents newest first, filtered by owner (None: all), status and labels."""
        where: list[str] = ["1=1"]
        params: list[Any] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if status:
            where.append("status = ?")
            params.append(status)
        for key, value in (labels or {}).items():
            where.append("EXISTS (SELECT 1 FROM json_each(agents.labels) WHERE key = ? AND value = ?)")
            params.extend([key, value])
        if before_pk is not None:
            where.append("pk < ?")
            params.append(before_pk)
        sql = f"SELECT {AGENT_COLUMNS} FROM agents WHERE {' AND '.join(where)} ORDER BY pk DESC LIMIT ?"
        rows = await _rows(self.reader, sql, (*params, limit))
        agents = []
        for row in rows:
            agent = agent_from_row(tuple(row))
            agents.append(self._agents.get(agent.id, agent))
        return agents

    async def lines_after(
        self,
        agent: Agent,
        after: int,
        *,
        upto: int | None = None,
        limit: int = 1000,
        query: LineQuery | None = None,
    ) -> list[Line]:
        """Up to `limit` lines with seq > after (and <= upto), ascending, matching `query`."""
        last = LAST_SEQ if upto is None else upto
        if query is not None and query.terms:
            return await matching_lines(self.matches, agent, query, after + 1, last, limit, descending=False)
        return await self.matches.plain_lines(agent, after + 1, last, limit, query.min_level if query else 0, False)

    async def lines_before(
        self, agent: Agent, before: int, *, limit: int = 1000, query: LineQuery | None = None
    ) -> list[Line]:
        """The `limit` lines just before seq `before`, ascending, matching `query`."""
        if query is not None and query.terms:
            lines = await matching_lines(self.matches, agent, query, 1, before - 1, limit, descending=True)
        else:
            lines = await self.matches.plain_lines(agent, 1, before - 1, limit, query.min_level if query else 0, True)
        return lines[::-1]

    @property
    def matches(self) -> SqliteMatchSource:
        """Reads of lines, with the index when there is one."""
        assert self._matches is not None, "store is not open"
        return self._matches

    async def search_lines(self, query: SearchQuery, *, before: int | None, limit: int) -> list[tuple[int, Line]]:
        """Up to `limit` lines matching `query` across agents, newest first, each with its id in the index (a page
        after it asks for ids below); ServiceUnavailable when search.index is off."""
        if self._index_reader is None:
            raise ServiceUnavailable("search needs the word index, and search.index is false", code="search_off")
        if query.agent_pks == ():
            return []
        if self._indexer is not None:
            await self._indexer.caught_up(SEARCH_WAIT)
        return await search_matching(self._index_reader, query, before, limit)

    async def volume(self, agent: Agent, buckets: int, since: float | None, until: float | None) -> dict[str, Any]:
        """The agent's lines per level in `buckets` equal buckets of since..until (default: its stored lines' span),
        from the volume index."""
        first, last = await stored_seconds(self.reader, agent.pk)
        span = run_span(first, last, buckets, since, until)
        if span is None:
            return {"buckets": []}
        return buckets_json(span, await volume_rows(self.reader, agent.pk, span))

    async def _count_uncounted(self) -> bool:
        """One slice of the summaries' background count; False once every stored line is counted."""

        def after(outcome: tuple[str, RunSummary] | None) -> bool:
            if outcome is None:
                return False
            agent_id, summary = outcome
            cached = self._agents.get(agent_id)
            if cached is not None:
                agent = cached.copy()
                agent.summary = summary
                self._agents[agent_id] = agent
            return True

        return await self._writes.submit(lambda: backfill_step(self._writer.db), after)  # type: ignore[no-any-return]

    async def revoked_since(self, after_rowid: int) -> list[tuple[int, str]]:
        """Revoked token ids recorded after `after_rowid`, as (rowid, jti)."""
        rows = await _rows(
            self.reader, "SELECT rowid, jti FROM revoked_tokens WHERE rowid > ? ORDER BY rowid", (after_rowid,)
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    # ---- writes ------------------------------------------------------------------------------

    async def append_lines(
        self,
        agent_id: str,
        subject: str,
        lines: Iterable[NewLine],
        *,
        may_write_any: bool = False,
        idempotency_key: str | None = None,
        name: str = "",
        labels: dict[str, str] | None = None,
    ) -> AppendResult:
        """Assign seqs and commit `lines`, creating the agent on first ingest; returns once durable."""
        job = AppendJob(agent_id, subject, may_write_any, NewLines.of(lines), idempotency_key, name, labels or {})
        return await self._writes.append(job)

    def queue_append(self, job: AppendJob) -> asyncio.Future[AppendResult]:
        """Queue an append for the next group commit: the future is done once it is durable (or refused)."""
        return self._writes.append(job)

    async def create_agent(self, agent_id: str, owner: str, name: str, labels: dict[str, str]) -> Agent:
        """Create a running agent; Conflict if the id is taken."""

        def after(agent: Agent) -> Agent:
            self._remember(agent_id, agent)
            self._notify_changed(agent)
            return agent

        work = lambda: self._writer.create_agent(agent_id, owner, name, labels, self._agents)  # noqa: E731
        return await self._writes.submit(work, after)  # type: ignore[no-any-return]

    async def update_agent(
        self,
        agent_id: str,
        *,
        status: str | None,
        name: str | None,
        labels: dict[str, str] | None,
        reason: str | None,
    ) -> Agent:
        """Change status, name, labels; a finished agent stays finished (Conflict)."""
        changes = {"status": status, "name": name, "labels": labels, "reason": reason}

        def after(agent: Agent) -> Agent:
            self._agents[agent_id] = agent
            self._notify_changed(agent)
            return agent

        work = lambda: self._writer.update_agent(agent_id, changes, self._agents)  # noqa: E731
        return await self._writes.submit(work, after)  # type: ignore[no-any-return]

    async def request_stop(self, agent_id: str, by: str) -> Agent:
        """Record that `by` asked the running agent to stop (the first request stays); Conflict once finished."""

        def after(agent: Agent) -> Agent:
            self._agents[agent_id] = agent
            self._notify_changed(agent)
            return agent

        work = lambda: request_stop_sqlite(  # noqa: E731
            self._writer.db, self._writer.agent(agent_id, self._agents), agent_id, by
        )
        return await self._writes.submit(work, after)  # type: ignore[no-any-return]

    async def delete_agent(self, agent_id: str) -> None:
        """Remove the agent, its lines and its idempotency keys."""

        def after(agent: Agent | None) -> None:
            self._agents.pop(agent_id, None)
            if self._indexer is not None:
                self._indexer.lines_removed()
            if agent is not None and self.listener is not None:
                self.listener.agent_deleted(agent)

        await self._writes.submit(lambda: self._writer.delete_agent(agent_id, self._agents), after)

    async def fail_idle_agents(self, idle_for: float) -> list[str]:
        """Mark running agents with no line for `idle_for` seconds as failed (reason timeout)."""
        cutoff = time.time() - idle_for
        rows = await _rows(
            self.reader,
            "SELECT id FROM agents WHERE status = 'running' AND coalesce(last_line_at, created_at) < ?",
            (cutoff,),
        )
        failed = []
        for (agent_id,) in rows:
            agent = await self.get_agent(agent_id)
            if agent is None or agent.finished or (agent.last_line_at or agent.created_at) >= cutoff:
                continue
            try:
                await self.update_agent(agent_id, status="failed", name=None, labels=None, reason="timeout")
                failed.append(agent_id)
            except ApiError:
                continue
        return failed

    async def enforce_retention(self, max_lines: int, max_age: float, idempotency_ttl: float) -> int:
        """Trim each agent to its newest `max_lines`, delete finished agents older than `max_age`."""
        removed = 0
        if max_age > 0:
            rows = await _rows(
                self.reader,
                "SELECT id FROM agents WHERE status != 'running' AND updated_at < ?",
                (time.time() - max_age,),
            )
            for (agent_id,) in rows:
                await self.delete_agent(agent_id)
                removed += 1
        if max_lines > 0:
            rows = await _rows(self.reader, "SELECT id FROM agents WHERE last_seq - first_seq + 1 > ?", (max_lines,))
            for (agent_id,) in rows:
                await self._writes.submit(partial(self._writer.trim, agent_id, max_lines, self._agents), self._replace)
                removed += 1
        older_than = time.time() - idempotency_ttl
        await self._writes.submit(lambda: self._writer.prune_keys(older_than), lambda _: None)
        return removed

    def _replace(self, agent: Agent | None) -> None:
        if agent is not None:
            self._agents[agent.id] = agent
            if self._indexer is not None:
                self._indexer.lines_removed()

    # ---- the writer loop ---------------------------------------------------------------------

    async def _after_each(self) -> None:
        if self._checkpointer.restart_due:
            await self._restart_wal()
        elif self._wal_bytes >= CHECKPOINT_BYTES:
            self._wal_bytes = 0
            self._checkpointer.start()

    async def _run_task(self, task: Task[Callable[[], Any]]) -> Any:
        try:
            outcome = await self._in_writer(lambda: self._writer.transaction(task.work))
        except sqlite3.Error as exc:
            raise _storage_error(exc) from None
        # Agent changes, deletes and trims may rewrite many pages: look at the WAL after each.
        self._wal_bytes += CHECKPOINT_BYTES
        return task.after(outcome)

    async def _run_appends(self, jobs: list[AppendJob]) -> list[AppendResult | ApiError]:
        started = time.perf_counter()
        try:
            # A file counts as a whole batch, committed in the writer thread: a 10 MiB one written on the event loop
            # stalls every request and stream for 45 ms (1 MB: 2 ms).
            weight = sum(len(job.lines) + len(job.attachments) * INLINE_COMMIT_LINES for job in jobs)
            if self._inline and weight <= INLINE_COMMIT_LINES:
                outcome = self._writer.append_batch(jobs, self._agents)
            else:
                outcome = await self._in_writer(lambda: self._writer.append_batch(jobs, self._agents))
        except Exception as exc:
            # Nothing was committed; the writer keeps serving the next batch whatever went wrong.
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc) from None
            log.exception("group commit failed")
            raise ServiceUnavailable("the write failed; nothing was stored, retry", code="write_failed") from None
        self._wal_bytes += outcome.byte_count
        for agent in outcome.staged.values():
            self._agents[agent.id] = agent
        announce(outcome, jobs, self.listener)
        if self._indexer is not None:
            self._indexer.lines_committed(agent.pk for agent in outcome.staged.values())
        if self.on_commit is not None:
            self.on_commit(outcome.line_count, time.perf_counter() - started)
        return outcome.results

    async def _restart_wal(self) -> None:
        # A batch of the index reading the lines holds a snapshot of the WAL, which stops the checkpoint short of
        # the WAL's end and the next commit from starting it over: the checkpoint waits for the batch in progress
        # (the commits go on meanwhile), and the next batch for the checkpoint. Readers that begin once every frame
        # is copied read the database file, so they do not keep the WAL either.
        if self._index is not None and not self._index.hold():
            return
        self._checkpointer.restart_due = False
        try:
            await self._checkpoint()
        finally:
            if self._index is not None:
                self._index.release()

    async def _checkpoint(self) -> None:
        # In the writer thread with no commit in flight, so the checkpoint copies every frame the passes beside
        # the commits left and the next commit starts the WAL over; the event loop keeps serving meanwhile.
        self._wal_bytes = 0
        try:
            await self._in_writer(self._writer.checkpoint)
        except sqlite3.Error as exc:
            # The next checkpoint copies these pages too; a failing disk shows up in the commits themselves.
            log.warning("WAL checkpoint failed: %s", exc)

    def _notify_changed(self, agent: Agent) -> None:
        if self.listener is not None:
            self.listener.agent_changed(agent)


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """All rows of a query as tuples."""
    return [tuple(row) for row in await conn.execute_fetchall(sql, params)]


def revoke_token_offline(db_path: Path, jti: str) -> None:
    """Record a revocation straight into the database file (for `sentra token revoke`); the server
    picks it up within a second."""
    with sqlite3.connect(db_path, timeout=10) as conn:
        conn.executescript(SCHEMA)
        conn.execute("INSERT OR IGNORE INTO revoked_tokens (jti, revoked_at) VALUES (?, ?)", (jti, time.time()))
    conn.close()
