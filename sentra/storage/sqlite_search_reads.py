"""Reads through the SQLite word index: the index's own read-only connection (IndexReader) and the store's
MatchSource, which answers plain reads itself and indexed ones through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from sentra.lines import Line
from sentra.models import Agent
from sentra.storage.base import SearchQuery
from sentra.storage.search_index import agent_tag, fts5_query, tag_groups
from sentra.storage.sqlite_schema import line_from_row
from sentra.storage.sqlite_search import search_path
from sentra.storage.words import Terms

_FIRST, _LAST = -(1 << 62), 1 << 62  # index ids beyond any line's: the open ends of a range


class IndexReader:
    """Reads through the index: an aiosqlite connection to the database with the index attached, both read-only."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Connect (the index file exists: the writer made it)."""
        self._conn = await aiosqlite.connect(
            f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
        )
        await self._conn.execute("PRAGMA busy_timeout=5000")
        await self._conn.execute(
            "ATTACH DATABASE ? AS search", (f"{search_path(self.db_path).resolve().as_uri()}?mode=ro",)
        )

    async def close(self) -> None:
        """Disconnect."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        assert self._conn is not None, "index is not open"
        return [tuple(row) for row in await self._conn.execute_fetchall(sql, params)]

    async def indexed_span(self, agent: Agent) -> tuple[int, int] | None:
        """The seqs of `agent` in the index (low, high), or None if none are known."""
        rows = await self._rows("SELECT low, high FROM search.progress WHERE agent_pk = ?", [agent.pk])
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def agent_candidates(
        self, agent: Agent, terms: Terms, min_level: int, first: int, last: int, limit: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` with seqs first..last holding every word of `terms`, in seq order."""
        lower = await self._rows(
            "SELECT id FROM search.seq_marks WHERE agent_pk = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
            [agent.pk, first],
        )
        upper = await self._rows(
            "SELECT id FROM search.seq_marks WHERE agent_pk = ? AND seq >= ? ORDER BY seq LIMIT 1", [agent.pk, last]
        )
        match = fts5_query(terms.required_words(), [[agent_tag(agent.pk)]])
        sql = (
            "SELECT l.seq, l.ts, l.level, l.source, l.message, l.fields FROM search.line_words(?) f "
            "JOIN search.line_refs r ON r.id = f.rowid JOIN lines l ON l.agent_pk = r.agent_pk AND l.seq = r.seq "
            "WHERE f.rowid >= ? AND f.rowid <= ? AND r.seq >= ? AND r.seq <= ? AND l.level >= ? "
            f"ORDER BY f.rowid {'DESC' if descending else ''} LIMIT ?"
        )
        params = [
            match,
            lower[0][0] if lower else _FIRST,
            upper[0][0] if upper else _LAST,
            first,
            last,
            min_level,
            limit,
        ]
        return [line_from_row(agent.id, row) for row in await self._rows(sql, params)]

    async def search_candidates(self, query: SearchQuery, before: int | None, limit: int) -> list[tuple[int, Line]]:
        """Up to `limit` lines holding every word of the query and passing its filters, newest first, with ids."""
        where = ["f.rowid < ?", "l.level >= ?"]
        params: list[Any] = [fts5_query(query.terms.required_words(), tag_groups(query))]
        params += [_LAST if before is None else before, query.min_level]
        for test, value in (
            ("l.ts >= ?", query.since),
            ("l.ts <= ?", query.until),
            ("a.owner = ?", query.owner),
        ):
            if value is not None:
                where.append(test)
                params.append(value)
        if query.agent_pks is not None:
            where.append(f"a.pk IN ({','.join('?' * len(query.agent_pks))})")
            params.extend(query.agent_pks)
        for key, value in query.labels.items():
            where.append("EXISTS (SELECT 1 FROM json_each(a.labels) WHERE key = ? AND value = ?)")
            params.extend([key, value])
        sql = (
            "SELECT r.id, a.id, l.seq, l.ts, l.level, l.source, l.message, l.fields FROM search.line_words(?) f "
            "JOIN search.line_refs r ON r.id = f.rowid JOIN lines l ON l.agent_pk = r.agent_pk AND l.seq = r.seq "
            f"JOIN agents a ON a.pk = r.agent_pk WHERE {' AND '.join(where)} ORDER BY f.rowid DESC LIMIT ?"
        )
        rows = await self._rows(sql, [*params, limit])
        return [(int(row[0]), line_from_row(row[1], row[2:])) for row in rows]


class SqliteMatchSource:
    """search_reads.MatchSource on SQLite: plain reads on the store's reader, the index's through its own."""

    def __init__(self, reader: aiosqlite.Connection, index: IndexReader | None) -> None:
        self.reader = reader
        self.index = index

    async def plain_lines(
        self, agent: Agent, first: int, last: int, limit: int, min_level: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` with seqs first..last at `min_level` or above, in seq order."""
        sql = (
            "SELECT seq, ts, level, source, message, fields FROM lines "
            "WHERE agent_pk = ? AND seq >= ? AND seq <= ? AND level >= ? "
            f"ORDER BY seq {'DESC' if descending else ''} LIMIT ?"
        )
        rows = await self.reader.execute_fetchall(sql, (agent.pk, first, last, min_level, limit))
        return [line_from_row(agent.id, tuple(row)) for row in rows]

    async def indexed_span(self, agent: Agent) -> tuple[int, int] | None:
        """The seqs of `agent` the index holds, or None."""
        return None if self.index is None else await self.index.indexed_span(agent)

    async def agent_candidates(
        self, agent: Agent, terms: Terms, min_level: int, first: int, last: int, limit: int, descending: bool
    ) -> list[Line]:
        """Lines of `agent` holding every word of `terms` (only asked for seqs indexed_span gave)."""
        assert self.index is not None
        return await self.index.agent_candidates(agent, terms, min_level, first, last, limit, descending)
