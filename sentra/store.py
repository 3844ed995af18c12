"""All SQL: agents, lines, idempotency keys and revoked tokens in one SQLite file, with group commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from sentra.errors import ApiError, Conflict, Forbidden, NotFound, ServiceUnavailable, StorageFull
from sentra.lines import LEVELS, Line, NewLine
from sentra.models import Agent, CommitListener

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_line_at REAL,
    first_seq INTEGER NOT NULL DEFAULT 1,
    last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS agents_by_owner ON agents (owner, pk);
CREATE INDEX IF NOT EXISTS agents_by_status ON agents (status, updated_at);
CREATE TABLE IF NOT EXISTS lines (
    agent_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    level INTEGER NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT,
    PRIMARY KEY (agent_pk, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    agent_pk INTEGER NOT NULL,
    key TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (agent_pk, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
);
"""

_AGENT_COLUMNS = (
    "pk, id, name, owner, status, reason, labels, created_at, updated_at, last_line_at, first_seq, last_seq"
)
_LEVEL_NAMES = {number: name for name, number in LEVELS.items()}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only, exactly as SQLite's lower() does, so live and stored search agree."""
    return text.translate(_ASCII_LOWER)


@dataclass
class AppendResult:
    """What an ingest request is answered with; `replayed` when an Idempotency-Key matched."""

    accepted: int
    first_seq: int | None
    last_seq: int | None
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        """The 200 body of POST /api/agents/{id}/logs."""
        return {"accepted": self.accepted, "first_seq": self.first_seq, "last_seq": self.last_seq}


@dataclass
class _Append:
    agent_id: str
    subject: str
    may_write_any: bool
    lines: list[NewLine]
    key: str | None
    name: str
    labels: dict[str, str]
    future: asyncio.Future[AppendResult]


@dataclass
class _Task:
    run: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]


@dataclass
class LineQuery:
    """Filters of a history read: minimum level and case-insensitive (ASCII) substring."""

    min_level: int = 0
    q: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def matches(self, line: Line) -> bool:
        """The same test the SQL applies, for lines that arrive live."""
        if line.levelno < self.min_level:
            return False
        return not self.q or ascii_lower(self.q) in ascii_lower(line.message)


def _storage_error(exc: sqlite3.Error) -> ApiError:
    text = str(exc)
    if "full" in text:
        return StorageFull("the disk is full; nothing was written, retry when space is freed")
    return ServiceUnavailable(f"the database cannot be written: {text}")


class Store:
    """The one owner of the SQLite file: a writer connection fed by a queue, and a reader connection."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", commit_max_lines: int = 20000) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.commit_max_lines = commit_max_lines
        self.listener: CommitListener | None = None
        self.commit_sizes: list[int] = []
        self.on_commit: Callable[[int, float], None] | None = None
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: deque[_Append | _Task] = deque()
        self._wake = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._agents: OrderedDict[str, Agent] = OrderedDict()
        self._closing = False
        self._busy = False

    async def open(self) -> None:
        """Open (creating if needed) the database in WAL mode and start the writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path, isolation_level=None)
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await self._writer.execute(f"PRAGMA synchronous={self.synchronous}")
        await self._writer.execute("PRAGMA busy_timeout=5000")
        await self._writer.executescript(SCHEMA)
        # A read-only file opens without complaint; find out now rather than at the first ingest.
        await self._writer.execute("BEGIN IMMEDIATE")
        await self._writer.execute("ROLLBACK")
        self._reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=5000")
        self._writer_task = asyncio.create_task(self._write_loop())

    async def close(self) -> None:
        """Write everything queued, then close both connections."""
        self._closing = True
        if self._writer_task is not None:
            self._wake.set()
            await self._writer_task
            self._writer_task = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write has committed (or failed) and been answered."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

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
        rows = await _rows(self.reader, f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = ?", (agent_id,))
        if not rows:
            return None
        agent = _agent_from_row(tuple(rows[0]))
        return self._remember(agent_id, agent)

    def cached_agent(self, agent_id: str) -> Agent | None:
        """The in-memory agent record, if loaded: always current, since this store is the only writer."""
        return self._agents.get(agent_id)

    def _remember(self, agent_id: str, agent: Agent) -> Agent:
        current = self._agents.get(agent_id)
        if current is not None:
            return current
        self._agents[agent_id] = agent
        while len(self._agents) > 100_000:
            self._agents.popitem(last=False)
        return agent

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
            where.append("json_extract(labels, ?) = ?")
            params.extend([f'$."{key}"', value])
        if before_pk is not None:
            where.append("pk < ?")
            params.append(before_pk)
        sql = f"SELECT {_AGENT_COLUMNS} FROM agents WHERE {' AND '.join(where)} ORDER BY pk DESC LIMIT ?"
        rows = await _rows(self.reader, sql, (*params, limit))
        agents = []
        for row in rows:
            agent = _agent_from_row(tuple(row))
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
        where, params = self._line_filters(agent, query)
        where.append("seq > ?")
        params.append(after)
        if upto is not None:
            where.append("seq <= ?")
            params.append(upto)
        sql = (
            f"SELECT seq, ts, level, source, message, fields FROM lines WHERE {' AND '.join(where)} "
            "ORDER BY seq LIMIT ?"
        )
        rows = await _rows(self.reader, sql, (*params, limit))
        return [_line_from_row(agent.id, tuple(row)) for row in rows]

    async def lines_before(
        self, agent: Agent, before: int, *, limit: int = 1000, query: LineQuery | None = None
    ) -> list[Line]:
        """The `limit` lines just before seq `before`, ascending, matching `query`."""
        where, params = self._line_filters(agent, query)
        where.append("seq < ?")
        params.append(before)
        sql = (
            f"SELECT seq, ts, level, source, message, fields FROM lines WHERE {' AND '.join(where)} "
            "ORDER BY seq DESC LIMIT ?"
        )
        rows = await _rows(self.reader, sql, (*params, limit))
        return [_line_from_row(agent.id, tuple(row)) for row in reversed(list(rows))]

    @staticmethod
    def _line_filters(agent: Agent, query: LineQuery | None) -> tuple[list[str], list[Any]]:
        where: list[str] = ["agent_pk = ?"]
        params: list[Any] = [agent.pk]
        if query and query.min_level:
            where.append("level >= ?")
            params.append(query.min_level)
        if query and query.q:
            where.append("instr(lower(message), ?) > 0")
            params.append(ascii_lower(query.q))
        return where, params

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
        lines: list[NewLine],
        *,
        may_write_any: bool = False,
        idempotency_key: str | None = None,
        name: str = "",
        labels: dict[str, str] | None = None,
    ) -> AppendResult:
        """Assign seqs and commit `lines`, creating the agent on first ingest; returns once durable."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        job = _Append(agent_id, subject, may_write_any, lines, idempotency_key, name, labels or {}, future)
        self._enqueue(job)
        return await future

    async def create_agent(self, agent_id: str, owner: str, name: str, labels: dict[str, str]) -> Agent:
        """Create a running agent; Conflict if the id is taken."""

        async def run() -> Agent:
            if await self._agent_for_write(agent_id) is not None:
                raise Conflict(f"agent {agent_id!r} already exists", code="agent_exists")
            agent = await self._insert_agent(agent_id, owner, name, labels, time.time())
            await self._commit()
            self._remember(agent_id, agent)
            self._notify_changed(agent)
            return agent

        return await self._submit(run)  # type: ignore[no-any-return]

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

        async def run() -> Agent:
            current = await self._agent_for_write(agent_id)
            if current is None:
                raise NotFound(f"agent {agent_id!r} was deleted", code="agent_not_found")
            agent = current.copy()
            if status is not None and status != agent.status:
                if agent.finished:
                    raise Conflict(
                        f"agent {agent_id!r} is {agent.status}; a finished agent cannot change status",
                        code="agent_finished",
                    )
                agent.status = status
                agent.reason = reason
            elif status is not None and reason is not None and not agent.finished:
                agent.reason = reason
            if name is not None:
                agent.name = name
            if labels is not None:
                agent.labels = labels
            agent.updated_at = time.time()
            await self._w.execute(
                "UPDATE agents SET status = ?, reason = ?, name = ?, labels = ?, updated_at = ? WHERE pk = ?",
                (agent.status, agent.reason, agent.name, agent.labels_json(), agent.updated_at, agent.pk),
            )
            await self._commit()
            self._agents[agent_id] = agent
            self._notify_changed(agent)
            return agent

        return await self._submit(run)  # type: ignore[no-any-return]

    async def delete_agent(self, agent_id: str) -> None:
        """Remove the agent, its lines and its idempotency keys."""

        async def run() -> None:
            agent = await self._agent_for_write(agent_id)
            if agent is None:
                return
            for table in ("lines", "idempotency"):
                await self._w.execute(f"DELETE FROM {table} WHERE agent_pk = ?", (agent.pk,))
            await self._w.execute("DELETE FROM agents WHERE pk = ?", (agent.pk,))
            await self._commit()
            self._agents.pop(agent_id, None)
            if self.listener is not None:
                self.listener.agent_deleted(agent)

        await self._submit(run)

    async def revoke_token(self, jti: str) -> None:
        """Record `jti` as revoked."""

        async def run() -> None:
            await self._w.execute(
                "INSERT OR IGNORE INTO revoked_tokens (jti, revoked_at) VALUES (?, ?)", (jti, time.time())
            )
            await self._commit()

        await self._submit(run)

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
            except Conflict:
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
                await self._trim(agent_id, max_lines)
                removed += 1

        async def prune_keys() -> None:
            await self._w.execute("DELETE FROM idempotency WHERE created_at < ?", (time.time() - idempotency_ttl,))
            await self._commit()

        await self._submit(prune_keys)
        return removed

    async def _trim(self, agent_id: str, max_lines: int) -> None:
        async def run() -> None:
            current = await self._agent_for_write(agent_id)
            if current is None or current.line_count <= max_lines:
                return
            agent = current.copy()
            agent.first_seq = agent.last_seq - max_lines + 1
            await self._w.execute("DELETE FROM lines WHERE agent_pk = ? AND seq < ?", (agent.pk, agent.first_seq))
            await self._w.execute("UPDATE agents SET first_seq = ? WHERE pk = ?", (agent.first_seq, agent.pk))
            await self._commit()
            self._agents[agent_id] = agent

        await self._submit(run)

    # ---- the writer --------------------------------------------------------------------------

    @property
    def _w(self) -> aiosqlite.Connection:
        assert self._writer is not None, "store is not open"
        return self._writer

    def _enqueue(self, job: _Append | _Task) -> None:
        if self._closing and self._writer_task is None:
            raise ServiceUnavailable("the server is shutting down")
        self._queue.append(job)
        self._wake.set()

    async def _submit(self, run: Callable[[], Awaitable[Any]]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Task(run, future))
        return await future

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            self._busy = True
            head = self._queue[0]
            if isinstance(head, _Task):
                self._queue.popleft()
                await self._run_task(head)
                self._busy = False
                continue
            batch: list[_Append] = []
            size = 0
            while self._queue and isinstance(self._queue[0], _Append):
                if batch and size + len(self._queue[0].lines) > self.commit_max_lines:
                    break
                job = self._queue.popleft()
                assert isinstance(job, _Append)
                batch.append(job)
                size += len(job.lines)
            await self._run_appends(batch)
            self._busy = False

    async def _run_task(self, task: _Task) -> None:
        try:
            await self._w.execute("BEGIN IMMEDIATE")
            result = await task.run()
        except BaseException as exc:
            await self._rollback()
            if not task.future.done():
                task.future.set_exception(_storage_error(exc) if isinstance(exc, sqlite3.Error) else exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not task.future.done():
                task.future.set_result(result)

    async def _rollback(self) -> None:
        if self._w.in_transaction:
            try:
                await self._w.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    async def _commit(self) -> None:
        await self._w.execute("COMMIT")

    async def _agent_for_write(self, agent_id: str) -> Agent | None:
        agent = self._agents.get(agent_id)
        if agent is not None:
            return agent
        rows = await _rows(self._w, f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = ?", (agent_id,))
        return self._remember(agent_id, _agent_from_row(tuple(rows[0]))) if rows else None

    async def _insert_agent(self, agent_id: str, owner: str, name: str, labels: dict[str, str], now: float) -> Agent:
        agent = Agent(0, agent_id, name, owner, "running", None, labels, now, now)
        cursor = await self._w.execute(
            "INSERT INTO agents (id, name, owner, status, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (agent_id, name, owner, "running", agent.labels_json(), now, now),
        )
        agent.pk = int(cursor.lastrowid or 0)
        return agent

    async def _run_appends(self, batch: list[_Append]) -> None:
        started = time.perf_counter()
        staged: dict[str, Agent] = {}
        created: list[Agent] = []
        answers: list[tuple[_Append, AppendResult, Agent | None, list[Line]]] = []
        keys_in_batch: dict[tuple[str, str], AppendResult] = {}
        line_rows: list[tuple[Any, ...]] = []
        key_rows: list[tuple[Any, ...]] = []
        now = time.time()
        try:
            await self._w.execute("BEGIN IMMEDIATE")
            for job in batch:
                try:
                    agent = staged.get(job.agent_id) or await self._agent_for_write(job.agent_id)
                    if agent is None:
                        agent = await self._insert_agent(job.agent_id, job.subject, job.name, job.labels, now)
                        created.append(agent)
                    elif job.agent_id not in staged:
                        agent = agent.copy()
                    if agent.owner != job.subject and not job.may_write_any:
                        raise Forbidden(f"agent {job.agent_id!r} belongs to another user", code="not_owner")
                    if job.key is not None:
                        replay = keys_in_batch.get((job.agent_id, job.key)) or await self._stored_answer(agent, job.key)
                        if replay is not None:
                            answers.append((job, replay, None, []))
                            continue
                    if agent.finished:
                        raise Conflict(
                            f"agent {job.agent_id!r} is {agent.status}; a finished agent takes no more lines",
                            code="agent_finished",
                        )
                except ApiError as exc:
                    job.future.set_exception(exc)
                    continue
                staged[job.agent_id] = agent
                first = agent.last_seq + 1
                lines = []
                for offset, new in enumerate(job.lines):
                    line = Line(job.agent_id, first + offset, new.ts, new.level, new.message, new.source, new.fields)
                    lines.append(line)
                    fields = json.dumps(new.fields, ensure_ascii=False) if new.fields else None
                    line_rows.append((agent.pk, line.seq, new.ts, LEVELS[new.level], new.source, new.message, fields))
                agent.last_seq = first + len(job.lines) - 1
                if agent.last_seq >= first:
                    agent.last_line_at = now
                agent.updated_at = now
                result = AppendResult(len(lines), first, agent.last_seq)
                if job.key is not None:
                    keys_in_batch[(job.agent_id, job.key)] = AppendResult(len(lines), first, agent.last_seq, True)
                    key_rows.append((agent.pk, job.key, json.dumps(result.to_json()), now))
                answers.append((job, result, agent, lines))
            if line_rows:
                await self._w.executemany(
                    "INSERT INTO lines (agent_pk, seq, ts, level, source, message, fields) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    line_rows,
                )
            if staged:
                await self._w.executemany(
                    "UPDATE agents SET last_seq = ?, last_line_at = ?, updated_at = ? WHERE pk = ?",
                    [(a.last_seq, a.last_line_at, a.updated_at, a.pk) for a in staged.values()],
                )
            if key_rows:
                await self._w.executemany(
                    "INSERT OR REPLACE INTO idempotency (agent_pk, key, response, created_at) VALUES (?, ?, ?, ?)",
                    key_rows,
                )
            await self._commit()
        except sqlite3.Error as exc:
            await self._rollback()
            for agent in created:
                self._agents.pop(agent.id, None)
            error = _storage_error(exc)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for agent in staged.values():
            self._agents[agent.id] = agent
        self._publish(created, answers)
        if self.on_commit is not None:
            self.on_commit(len(line_rows), time.perf_counter() - started)

    def _publish(
        self, created: list[Agent], answers: list[tuple[_Append, AppendResult, Agent | None, list[Line]]]
    ) -> None:
        # Listeners hear of a commit before any request is answered, so a line is live everywhere
        # before its writer learns it was accepted.
        for new in created:
            self._notify_changed(self._agents.get(new.id, new))
        for _job, _result, target, lines in answers:
            if target is not None and lines and self.listener is not None:
                self.listener.lines_committed(target, lines)
        for job, result, _agent, _lines in answers:
            if not job.future.done():
                job.future.set_result(result)

    async def _stored_answer(self, agent: Agent, key: str) -> AppendResult | None:
        if agent.pk == 0:
            return None
        rows = await _rows(self._w, "SELECT response FROM idempotency WHERE agent_pk = ? AND key = ?", (agent.pk, key))
        if not rows:
            return None
        answer = json.loads(rows[0][0])
        return AppendResult(answer["accepted"], answer["first_seq"], answer["last_seq"], True)

    def _notify_changed(self, agent: Agent) -> None:
        if self.listener is not None:
            self.listener.agent_changed(agent)


async def _rows(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """All rows of a query as tuples."""
    return [tuple(row) for row in await conn.execute_fetchall(sql, params)]


def _agent_from_row(row: tuple[Any, ...]) -> Agent:
    pk, agent_id, name, owner, status, reason, labels, created, updated, last_line_at, first_seq, last_seq = row
    return Agent(
        pk,
        agent_id,
        name,
        owner,
        status,
        reason,
        json.loads(labels),
        created,
        updated,
        last_line_at,
        first_seq,
        last_seq,
    )


def _line_from_row(agent_id: str, row: tuple[Any, ...]) -> Line:
    seq, ts, level, source, message, fields = row
    return Line(
        agent_id,
        seq,
        ts,
        _LEVEL_NAMES.get(level, "INFO"),
        message,
        source,
        json.loads(fields) if fields else {},
    )


def revoke_token_offline(db_path: Path, jti: str) -> None:
    """Record a revocation straight into the database file (for `sentra token revoke`); the server
    picks it up within a second."""
    with sqlite3.connect(db_path, timeout=10) as conn:
        conn.executescript(SCHEMA)
        conn.execute("INSERT OR IGNORE INTO revoked_tokens (jti, revoked_at) VALUES (?, ?)", (jti, time.time()))
    conn.close()
