"""Storage on PostgreSQL, shared by several Sentra processes: the same records and errors as storage/sqlite.py.

One writer connection commits queued appends in groups, each batch one transaction; every agent it touches is
locked (SELECT ... FOR UPDATE, in id order, by storage/postgres_writer.py) so two processes appending to one agent
get gap-free seqs. Reads use a small pool. Nothing else imports asyncpg.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from sentra.errors import ApiError, ServiceUnavailable, StorageFull
from sentra.lines import Line, NewLine, NewLines
from sentra.models import Agent, AppendResult, CommitListener
from sentra.storage import postgres_writer as writer
from sentra.storage.agent_cache import AgentCache
from sentra.storage.appends import AppendJob, BatchOutcome
from sentra.storage.base import LineQuery, SearchQuery
from sentra.storage.postgres_attachments import ATTACHMENT_SCHEMA, PostgresAttachments
from sentra.storage.postgres_schema import (
    AGENT_COLUMNS,
    SCHEMA,
    SCHEMA_LOCK,
    agent_from_row,
    from_pg,
    labels_to_pg,
    to_pg,
)
from sentra.storage.postgres_search import PgIndexTarget, PgMatchSource, create_search_schema
from sentra.storage.postgres_summary import backfill_step, create_summary_schema, stored_seconds, volume_rows
from sentra.storage.postgres_webhooks import WEBHOOK_SCHEMA, PostgresWebhooks
from sentra.storage.search_index import SEARCH_WAIT, IndexWriter
from sentra.storage.search_reads import LAST_SEQ, matching_lines, search_matching
from sentra.storage.shares import PG_SHARE_SCHEMA, PostgresShares
from sentra.storage.stops import PG_STOP_SCHEMA, request_stop_pg
from sentra.storage.summary_backfill import SummaryBackfill
from sentra.storage.write_queue import Task, WriteQueue, announce
from sentra.volume import buckets_json, run_span

log = logging.getLogger("sentra.store")
CONNECT_TIMEOUT = 10.0
DEADLOCK_RETRIES = 3
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Errors after which the writer connection is not to be used again.
_BROKEN = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the server terminated the session (pg_terminate_backend)
    OSError,
    TimeoutError,
)
Work = Callable[[Any], Awaitable[Any]]


def mask_password(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _storage_error(exc: BaseException, doing: str) -> ApiError:
    if isinstance(exc, asyncpg.DiskFullError):
        return StorageFull("the disk is full; nothing was written, retry when space is freed")
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.PostgresConnectionError | asyncpg.AdminShutdownError | OSError):
        return ServiceUnavailable(f"the connection to the database was lost; retry ({exc})")
    return ServiceUnavailable(f"the database cannot be {doing}: {exc}")


async def _create_schema(conn: Any, search_index: bool = False) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(SCHEMA)
        if search_index:
            await create_search_schema(conn)
        await conn.execute(WEBHOOK_SCHEMA)
        await create_summary_schema(conn)
        await conn.execute(ATTACHMENT_SCHEMA)
        await conn.execute(PG_STOP_SCHEMA)
        await conn.execute(PG_SHARE_SCHEMA)


class PostgresStore:
    """Agents, lines, idempotency keys and revoked tokens in PostgreSQL, with group commit."""

    def __init__(self, url: str, *, commit_max_lines: int = 20000, search_index: bool = True) -> None:
        self.url = url
        self.search_index = search_index
        self.commit_max_lines = commit_max_lines
        self.listener: CommitListener | None = None
        self.on_commit: Callable[[int, float], None] | None = None
        self._conn: Any = None
        self._pool: Any = None
        self._writes: WriteQueue[Work] = WriteQueue(commit_max_lines, self._run_appends, self._run_task)
        self._agents = AgentCache()
        self.webhooks = PostgresWebhooks(self._fetch, self._writes.submit)
        self.attachments = PostgresAttachments(self._fetch)
        self.shares = PostgresShares(self._fetch, self._writes.submit)
        self._matches = PgMatchSource(self._fetch, search_index)
        self.summaries = SummaryBackfill(self._count_uncounted)
        self._index: PgIndexTarget | None = None
        self._indexer: IndexWriter | None = None

    @property
    def description(self) -> str:
        """The database URL without its password, for the start-up banner."""
        return mask_password(self.url)

    async def open(self) -> None:
        """Connect, create the schema if missing, and start the writer; OSError if the server cannot be used."""
        try:
            await self._connect_writer()
            await _create_schema(self._conn, self.search_index)
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=4,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": "sentra-reader"},
            )
        except (*_DB_ERRORS, ValueError) as exc:
            await self._disconnect()
            raise OSError(f"cannot connect to {self.description}: {exc}") from None
        if self.search_index:
            self._index = PgIndexTarget(self.url)
            self._indexer = IndexWriter(self._index, sees_every_commit=False)
            self._indexer.start()
        self._writes.start()
        self.summaries.start()

    async def _connect_writer(self) -> None:
        self._conn = await asyncpg.connect(
            self.url, timeout=CONNECT_TIMEOUT, server_settings={"application_name": "sentra-writer"}
        )

    async def _disconnect(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._conn is not None:
            await self._conn.close(timeout=CONNECT_TIMEOUT)
            self._conn = None

    async def close(self) -> None:
        """Write everything queued, then disconnect."""
        await self.summaries.close()
        await self._writes.close()
        if self._indexer is not None:
            await self._indexer.close()
            self._indexer = None
        if self._index is not None:
            await self._index.close()
            self._index = None
        await self._disconnect()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write has committed (or failed) and been answered."""
        await self._writes.drain(timeout)

    # ---- reads -------------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        assert self._pool is not None, "store is not open"
        try:
            return list(await self._pool.fetch(sql, *args))
        except _DB_ERRORS as exc:
            raise _storage_error(exc, "read") from None

    async def check(self) -> None:
        """Raise if the database cannot be read (for /healthz)."""
        await self._fetch("SELECT 1 FROM agents LIMIT 1")

    async def get_agent(self, agent_id: str) -> Agent | None:
        """The agent as committed, read afresh: another process may have changed it."""
        rows = await self._fetch(f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1", agent_id)
        if not rows:
            self._agents.pop(agent_id, None)
            return None
        agent = agent_from_row(rows[0])
        self.observe_agent(agent)
        return agent

    def cached_agent(self, agent_id: str) -> Agent | None:
        """The newest record this process has committed or heard of, without I/O."""
        return self._agents.get(agent_id)

    def forget_agent(self, agent: Agent) -> None:
        """Another process deleted this agent: drop it from the cache unless a newer one took its id."""
        self._agents.forget(agent)

    def observe_agent(self, agent: Agent) -> Agent:
        """Keep an agent record committed elsewhere if it is newer than the cached one; the newest."""
        return self._agents.newest(agent)

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
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        for test, value in (
            ("owner = ${}", None if owner is None else to_pg(owner)),
            ("status = ${}", status or None),
            ("labels @> ${}::jsonb", labels_to_pg(labels) if labels else None),
            ("pk < ${}", before_pk),
        ):
            if value is not None:
                params.append(value)
                where.append(test.format(len(params)))
        params.append(limit)
        sql = f"SELECT {AGENT_COLUMNS} FROM agents WHERE {' AND '.join(where)} ORDER BY pk DESC LIMIT ${len(params)}"
        return [agent_from_row(row) for row in await self._fetch(sql, *params)]

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
            return await matching_lines(self._matches, agent, query, after + 1, last, limit, descending=False)
        min_level = query.min_level if query else 0
        return await self._matches.plain_lines(agent, after + 1, last, limit, min_level, False)

    async def lines_before(
        self, agent: Agent, before: int, *, limit: int = 1000, query: LineQuery | None = None
    ) -> list[Line]:
        """The `limit` lines just before seq `before`, ascending, matching `query`."""
        if query is not None and query.terms:
            lines = await matching_lines(self._matches, agent, query, 1, before - 1, limit, descending=True)
        else:
            min_level = query.min_level if query else 0
            lines = await self._matches.plain_lines(agent, 1, before - 1, limit, min_level, True)
        return lines[::-1]

    async def search_lines(self, query: SearchQuery, *, before: int | None, limit: int) -> list[tuple[int, Line]]:
        """Up to `limit` lines matching `query` across agents, newest first, each with its id in the index (a page
        after it asks for ids below); ServiceUnavailable when search.index is off."""
        if not self.search_index:
            raise ServiceUnavailable("search needs the word index, and search.index is false", code="search_off")
        if query.agent_pks == ():
            return []
        if self._indexer is not None:
            self._indexer.nudge()  # this process may be the one that writes the index
        await self._matches.caught_up(query.owner, SEARCH_WAIT)
        return await search_matching(self._matches, query, before, limit)

    async def volume(self, agent: Agent, buckets: int, since: float | None, until: float | None) -> dict[str, Any]:
        """The agent's lines per level in `buckets` equal buckets of since..until (default: its stored lines' span),
        from the volume index."""
        first, last = await stored_seconds(self._fetch, agent.pk)
        span = run_span(first, last, buckets, since, until)
        if span is None:
            return {"buckets": []}
        return buckets_json(span, await volume_rows(self._fetch, agent.pk, span))

    async def _count_uncounted(self) -> bool:
        """One slice of the summaries' background count; False once every stored line is counted."""
        outcome = await self._writes.submit(backfill_step, lambda outcome: outcome)
        return outcome is not None

    async def revoked_since(self, after_rowid: int) -> list[tuple[int, str]]:
        """Revoked token ids recorded after `after_rowid`, as (id, jti)."""
        rows = await self._fetch("SELECT id, jti FROM revoked_tokens WHERE id > $1 ORDER BY id", after_rowid)
        return [(int(row[0]), from_pg(row[1])) for row in rows]

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
        """Assign gap-free seqs and commit `lines`, creating the agent on first ingest; returns once durable."""
        job = AppendJob(agent_id, subject, may_write_any, NewLines.of(lines), idempotency_key, name, labels or {})
        return await self._writes.append(job)

    def queue_append(self, job: AppendJob) -> asyncio.Future[AppendResult]:
        """Queue an append for the next group commit: the future is done once it is durable (or refused)."""
        return self._writes.append(job)

    async def create_agent(self, agent_id: str, owner: str, name: str, labels: dict[str, str]) -> Agent:
        """Create a running agent; Conflict if the id is taken."""

        work = partial(writer.create_agent, agent_id=agent_id, owner=owner, name=name, labels=labels)
        return await self._writes.submit(work, self._changed)  # type: ignore[no-any-return]

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
        work = partial(writer.update_agent, agent_id=agent_id, changes=changes)
        return await self._writes.submit(work, self._changed)  # type: ignore[no-any-return]

    async def request_stop(self, agent_id: str, by: str) -> Agent:
        """Record that `by` asked the running agent to stop (the first request stays); Conflict once finished."""
        work = partial(request_stop_pg, agent_id=agent_id, by=by)
        return await self._writes.submit(work, self._changed)  # type: ignore[no-any-return]

    def _changed(self, agent: Agent) -> Agent:
        self._agents.keep(agent)
        if self.listener is not None:
            self.listener.agent_changed(agent)
        return agent

    async def delete_agent(self, agent_id: str) -> None:
        """Remove the agent, its lines and its idempotency keys."""

        def after(agent: Agent | None) -> None:
            self._agents.pop(agent_id, None)
            if self._indexer is not None:
                self._indexer.lines_removed()
            if agent is not None and self.listener is not None:
                self.listener.agent_deleted(agent)

        await self._writes.submit(partial(writer.delete_agent, agent_id=agent_id), after)

    async def fail_idle_agents(self, idle_for: float) -> list[str]:
        """Mark running agents with no line for `idle_for` seconds as failed (reason timeout)."""
        cutoff = time.time() - idle_for
        rows = await self._fetch(
            "SELECT id FROM agents WHERE status = 'running' AND coalesce(last_line_at, created_at) < $1", cutoff
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
            rows = await self._fetch(
                "SELECT id FROM agents WHERE status != 'running' AND updated_at < $1", time.time() - max_age
            )
            for (agent_id,) in rows:
                await self.delete_agent(agent_id)
                removed += 1
        if max_lines > 0:
            rows = await self._fetch("SELECT id FROM agents WHERE last_seq - first_seq + 1 > $1", max_lines)
            for (agent_id,) in rows:
                await self._writes.submit(partial(writer.trim, agent_id=agent_id, max_lines=max_lines), self._trimmed)
                removed += 1
        older_than = time.time() - idempotency_ttl
        await self._writes.submit(partial(writer.prune_keys, older_than=older_than), lambda _: None)
        return removed

    def _trimmed(self, agent: Agent | None) -> None:
        if agent is not None:
            self._agents.keep(agent)

    # ---- the writer loop ---------------------------------------------------------------------

    async def _transaction(self, work: Work) -> Any:
        """Run `work` in one transaction on the writer connection (reconnecting if it was lost);
        retried from the start when PostgreSQL broke a deadlock by aborting it."""
        attempts = 0
        while True:
            if self._conn is None or self._conn.is_closed():
                self._conn = None
                await self._connect_writer()
            try:
                async with self._conn.transaction():
                    return await work(self._conn)
            except asyncpg.DeadlockDetectedError:
                attempts += 1
                if attempts == DEADLOCK_RETRIES:
                    raise
            except _BROKEN:
                # The connection broke, or was left in the middle of an operation (a rollback that could not reach
                # the server): the next write opens a new one instead of failing on this one too.
                conn, self._conn = self._conn, None
                conn.terminate()
                raise

    async def _run_task(self, task: Task[Work]) -> Any:
        try:
            outcome = await self._transaction(task.work)
        except _DB_ERRORS as exc:
            log.warning("database write failed: %s", exc)
            raise _storage_error(exc, "written") from None
        return task.after(outcome)

    async def _run_appends(self, jobs: list[AppendJob]) -> list[AppendResult | ApiError]:
        started = time.perf_counter()
        try:
            outcome: BatchOutcome = await self._transaction(
                partial(writer.append_batch, jobs=jobs, hooks=self.webhooks.line_hooks)
            )
        except Exception as exc:
            # Nothing was committed; the writer keeps serving the next batch whatever went wrong.
            if isinstance(exc, _DB_ERRORS):
                log.warning("group commit failed: %s", exc)
                raise _storage_error(exc, "written") from None
            log.exception("group commit failed")
            raise ServiceUnavailable("the write failed; nothing was stored, retry", code="write_failed") from None
        for agent in outcome.staged.values():
            self.observe_agent(agent)
        announce(outcome, jobs, self.listener)
        if self._indexer is not None:
            self._indexer.lines_committed(agent.pk for agent in outcome.staged.values())
        if self.on_commit is not None:
            self.on_commit(outcome.line_count, time.perf_counter() - started)
        return outcome.results


async def revoke_token_pg(url: str, jti: str) -> None:
    """Record a revocation in the database (for `sentra token revoke`); every server picks it up within a second."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except (*_DB_ERRORS, ValueError) as exc:
        raise OSError(f"cannot connect to {mask_password(url)}: {exc}") from None
    try:
        await _create_schema(conn)
        await conn.execute(
            "INSERT INTO revoked_tokens (jti, revoked_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            to_pg(jti),
            time.time(),
        )
    finally:
        await conn.close()
