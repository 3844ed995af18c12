"""The word index on PostgreSQL: table line_words, each line's words as a tsvector under a GIN index, written by one
process at a time (the one holding an advisory lock on a connection of its own; another takes over when it goes),
in transactions of its own, never in the group commit.

The tsvector holds sentra.storage.words' words as they are (an ASCII message without fields split by a regular
expression in SQL, as the rule splits it; other lines as the rule's words, in the text form of a tsvector: no
parser, no dictionary), so PostgreSQL finds exactly the lines holding the words SQLite's FTS5 finds, and the rule
decides the rest. Why full text and not pg_trgm, measured: docs/performance.md#search.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from sentra.lines import Line
from sentra.models import Agent
from sentra.storage.base import SearchQuery
from sentra.storage.postgres_schema import LINE_COLUMNS, from_pg, labels_to_pg, line_from_row, to_pg
from sentra.storage.search_index import (
    AGENT_RUN,
    LIVE_BASE,
    TAG,
    Span,
    agent_tag,
    build_spans,
    live_spans,
    rule_words,
    tag_groups,
    tsquery_text,
)
from sentra.storage.words import WORDS_VERSION, Terms

SEARCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS line_words (
    id BIGINT PRIMARY KEY,
    agent_pk BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    words TSVECTOR NOT NULL
);
CREATE INDEX IF NOT EXISTS line_words_match ON line_words USING gin (words);
CREATE INDEX IF NOT EXISTS line_words_by_agent ON line_words (agent_pk, seq);
-- Per agent, the seqs in the index: low..high. Lines below low were stored before the index and are being added.
CREATE TABLE IF NOT EXISTS line_words_progress (
    agent_pk BIGINT PRIMARY KEY,
    low BIGINT NOT NULL,
    high BIGINT NOT NULL
);
"""
# Any constant shared by every Sentra process: held by the one that writes the index.
INDEX_LOCK = 0x53454E545249
CONNECT_TIMEOUT = 10.0
# How often a search that waits for the index looks again.
CATCH_UP_POLL = 0.05
Fetch = Callable[..., Awaitable[list[Any]]]
_FIRST, _LAST = -(1 << 62), 1 << 62
_SPANS = (
    "spans AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[]) AS s(pk, first, last, tag))"
)
_SPANNED = "FROM spans s JOIN lines l ON l.agent_pk = s.pk AND l.seq >= s.first AND l.seq <= s.last"
# The lines SQL does not split: those with fields, with other than ASCII (or U+0000, escaped), with ESC (the rule
# drops escape sequences), or so long that a word might pass PostgreSQL's 2,047 bytes (the rule cuts words at 200
# characters).
_NEEDS_RULE = (
    "l.fields IS NOT NULL OR octet_length(l.message) <> char_length(l.message) OR char_length(l.message) > 2000 "
    "OR strpos(l.message, chr(27)) > 0"
)
_RULED = f"WITH {_SPANS} SELECT l.agent_pk, l.seq, l.message, l.fields {_SPANNED} WHERE {_NEEDS_RULE}"
_ASCII_WORDS = (
    "array_remove(regexp_split_to_array(translate(p.message, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', "
    "'abcdefghijklmnopqrstuvwxyz'), '[^a-z0-9]+'), '')"
)
# A batch: `order` sorts its lines by time across agents, by a running maximum (minimum, going back) within an
# agent so that its ids follow its seqs.
_BATCH = (
    f"WITH {_SPANS}, picked AS (SELECT l.agent_pk, l.seq, l.level, l.message, s.tag, "
    "{running}(l.ts) OVER (PARTITION BY l.agent_pk ORDER BY l.seq {direction}) AS t "
    f"{_SPANNED}), ruled AS (SELECT * FROM unnest($5::bigint[], $6::bigint[], $7::text[]) AS r(pk, seq, words)) "
    "INSERT INTO line_words (id, agent_pk, seq, words) "
    "SELECT $8 {sign} (row_number() OVER (ORDER BY p.t {direction}, p.agent_pk, p.seq {direction}) - 1), "
    "p.agent_pk, p.seq, CASE WHEN r.words IS NULL "
    f"THEN array_to_tsvector({_ASCII_WORDS} || ARRAY['{TAG}a' || p.agent_pk, '{TAG}l' || p.level, p.tag]) "
    f"ELSE (r.words || ' {TAG}a' || p.agent_pk || ' {TAG}l' || p.level || ' ' || p.tag)::tsvector END "
    "FROM picked p LEFT JOIN ruled r ON r.pk = p.agent_pk AND r.seq = p.seq"
)


async def create_search_schema(conn: Any) -> None:
    """Create the index's tables (inside the schema's locked transaction); a database that had none, or one holding
    the words of an older rule (WORDS_VERSION, in the table's comment), gets every stored line added in the
    background, newest first."""
    existed = await conn.fetchval("SELECT to_regclass('line_words_progress') IS NOT NULL")
    await conn.execute(SEARCH_SCHEMA)
    version = f"words {WORDS_VERSION}"
    if existed and await conn.fetchval("SELECT obj_description('line_words'::regclass, 'pg_class')") == version:
        return
    await conn.execute("TRUNCATE line_words, line_words_progress")
    await conn.execute(
        "INSERT INTO line_words_progress (agent_pk, low, high) SELECT pk, last_seq + 1, last_seq FROM agents"
    )
    await conn.execute(f"COMMENT ON TABLE line_words IS '{version}'")


class PgIndexTarget:
    """The index's write side (search_index.IndexTarget): a connection of its own, which writes only while it holds
    INDEX_LOCK."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        self._next_live = LIVE_BASE
        self._next_back = LIVE_BASE - 1
        self._leading = False

    async def close(self) -> None:
        """Disconnect (which lets another process take the lock)."""
        if self._conn is not None:
            await self._conn.close(timeout=CONNECT_TIMEOUT)
            self._conn = None

    async def _leader(self) -> Any:
        """The connection if this process writes the index, else None."""
        if self._conn is not None and self._conn.is_closed():
            self._conn = None
        if self._conn is None:
            self._conn = await asyncpg.connect(
                self.url, timeout=CONNECT_TIMEOUT, server_settings={"application_name": "sentra-indexer"}
            )
            self._leading = False
        if not self._leading:
            self._leading = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", INDEX_LOCK))
            if not self._leading:
                return None
            low, high = await self._conn.fetchrow("SELECT min(id), max(id) FROM line_words")
            self._next_live = max(LIVE_BASE, (high or 0) + 1)
            self._next_back = min(LIVE_BASE - 1, (low if low is not None else LIVE_BASE) - 1)
        return self._conn

    async def live_batch(self, dirty: set[int] | None, max_lines: int) -> tuple[int, bool]:
        """Index new lines of any agent: (lines indexed, more left)."""
        conn = await self._leader()
        if conn is None:
            return 0, False
        behind = await conn.fetch(
            "SELECT a.pk, a.owner, a.first_seq, a.last_seq, p.high, p.low FROM agents a "
            "LEFT JOIN line_words_progress p ON p.agent_pk = a.pk "
            "WHERE (p.agent_pk IS NULL OR a.last_seq > p.high) AND a.last_seq >= a.first_seq LIMIT $1",
            max(1, max_lines // AGENT_RUN) + 1,
        )
        if not behind:
            return 0, False
        spans, more = live_spans(
            [(pk, from_pg(owner), first, last, high) for pk, owner, first, last, high, _ in behind], max_lines
        )
        lows = {row[0]: row[2] if row[5] is None else row[5] for row in behind}
        count = await self._write(
            conn,
            spans,
            self._next_live,
            descending=False,
            progress={s.agent_pk: (lows[s.agent_pk], s.last) for s in spans},
        )
        self._next_live += count
        return count, more

    async def backfill_batch(self, max_lines: int) -> int:
        """Index lines stored before the index existed, newest first; how many (0: none left)."""
        conn = await self._leader()
        if conn is None:
            return 0
        pending = await conn.fetch(
            "SELECT a.pk, a.owner, a.first_seq, p.low, p.high FROM line_words_progress p "
            "JOIN agents a ON a.pk = p.agent_pk WHERE p.low > a.first_seq ORDER BY a.last_line_at DESC LIMIT $1",
            max(1, max_lines // AGENT_RUN),
        )
        if not pending:
            return 0
        spans = build_spans([(pk, from_pg(owner), first, low) for pk, owner, first, low, _ in pending], max_lines)
        highs = {row[0]: row[4] for row in pending}
        progress = {s.agent_pk: (s.first, highs[s.agent_pk]) for s in spans}
        count = await self._write(conn, spans, self._next_back, descending=True, progress=progress)
        self._next_back -= count
        return max(count, 1)

    @staticmethod
    async def _write(
        conn: Any, spans: list[Span], start: int, *, descending: bool, progress: dict[int, tuple[int, int]]
    ) -> int:
        """Add the lines of `spans` with ids from `start` (counting down if `descending`), and record each agent's
        indexed seqs, in one transaction; how many lines."""
        columns = [list(column) for column in zip(*spans, strict=True)]
        async with conn.transaction():
            ruled = await conn.fetch(_RULED, *columns)
            words = [rule_words(from_pg(message), fields) for _pk, _seq, message, fields in ruled]
            sql = _BATCH.format(
                running="min" if descending else "max",
                direction="DESC" if descending else "",
                sign="-" if descending else "+",
            )
            status = await conn.execute(
                sql, *columns, [row[0] for row in ruled], [row[1] for row in ruled], words, start
            )
            await conn.execute(
                "INSERT INTO line_words_progress (agent_pk, low, high) "
                "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) "
                "ON CONFLICT (agent_pk) DO UPDATE SET low = excluded.low, high = excluded.high",
                list(progress),
                [span[0] for span in progress.values()],
                [span[1] for span in progress.values()],
            )
        return int(status.split()[-1])

    async def backlog(self) -> int:
        """Lines stored before the index existed and not yet in it."""
        conn = await self._leader()
        if conn is None:
            return 0
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(p.low - a.first_seq), 0) FROM line_words_progress p "
                "JOIN agents a ON a.pk = p.agent_pk WHERE p.low > a.first_seq"
            )
        )

    async def purge_batch(self, max_lines: int) -> int:
        """Remove entries of deleted agents and trimmed lines; how many (0: none left)."""
        conn = await self._leader()
        if conn is None:
            return 0
        found = await conn.fetchrow(
            "SELECT p.agent_pk, a.first_seq, a.pk IS NULL OR a.last_seq < p.high FROM line_words_progress p "
            "LEFT JOIN agents a ON a.pk = p.agent_pk "
            "WHERE a.pk IS NULL OR a.last_seq < p.high OR (a.first_seq > p.low AND p.high >= p.low) LIMIT 1"
        )
        if found is None:
            return 0
        pk, first_seq, whole = found
        below = _LAST if whole else first_seq
        async with conn.transaction():
            removed = int(
                (
                    await conn.execute(
                        "DELETE FROM line_words WHERE id IN "
                        "(SELECT id FROM line_words WHERE agent_pk = $1 AND seq < $2 LIMIT $3)",
                        pk,
                        below,
                        max_lines,
                    )
                ).split()[-1]
            )
            if removed < max_lines and whole:
                await conn.execute("DELETE FROM line_words_progress WHERE agent_pk = $1", pk)
            elif removed < max_lines:
                await conn.execute(
                    "UPDATE line_words_progress SET low = greatest(low, $2), high = greatest(high, $2 - 1) "
                    "WHERE agent_pk = $1",
                    pk,
                    first_seq,
                )
        return max(removed, 1)


class PgMatchSource:
    """search_reads.MatchSource and SearchSource on PostgreSQL, reading through the store's pool."""

    def __init__(self, fetch: Fetch, indexed: bool) -> None:
        self.fetch = fetch
        self.indexed = indexed

    async def plain_lines(
        self, agent: Agent, first: int, last: int, limit: int, min_level: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` with seqs first..last at `min_level` or above, in seq order."""
        sql = (
            f"SELECT {LINE_COLUMNS} FROM lines WHERE agent_pk = $1 AND seq >= $2 AND seq <= $3 AND level >= $4 "
            f"ORDER BY seq {'DESC' if descending else ''} LIMIT $5"
        )
        rows = await self.fetch(sql, agent.pk, first, last, min_level, limit)
        return [line_from_row(agent.id, row) for row in rows]

    async def indexed_span(self, agent: Agent) -> tuple[int, int] | None:
        """The seqs of `agent` the index holds, or None."""
        if not self.indexed:
            return None
        rows = await self.fetch("SELECT low, high FROM line_words_progress WHERE agent_pk = $1", agent.pk)
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def agent_candidates(
        self, agent: Agent, terms: Terms, min_level: int, first: int, last: int, limit: int, descending: bool
    ) -> list[Line]:
        """Up to `limit` lines of `agent` with seqs first..last holding every word of `terms`, in seq order."""
        sql = (
            "SELECT l.seq, l.ts, l.level, l.source, l.message, l.fields FROM line_words w "
            "JOIN lines l ON l.agent_pk = w.agent_pk AND l.seq = w.seq "
            "WHERE w.agent_pk = $1 AND w.seq >= $2 AND w.seq <= $3 AND w.words @@ $4::tsquery AND l.level >= $5 "
            f"ORDER BY w.seq {'DESC' if descending else ''} LIMIT $6"
        )
        match = tsquery_text(terms.required_words(), [[agent_tag(agent.pk)]])
        rows = await self.fetch(sql, agent.pk, first, last, match, min_level, limit)
        return [line_from_row(agent.id, row) for row in rows]

    async def caught_up(self, owner: str | None, timeout: float) -> None:
        """Wait (at most `timeout` s) until the index holds every line of `owner`'s agents (None: any agent's)
        committed so far, by any process."""
        owned = "" if owner is None else "AND a.owner = $1"
        behind = await self.fetch(
            "SELECT a.pk, a.last_seq FROM agents a LEFT JOIN line_words_progress p ON p.agent_pk = a.pk "
            f"WHERE a.last_seq > coalesce(p.high, a.first_seq - 1) AND a.last_seq >= a.first_seq {owned}",
            *(() if owner is None else (to_pg(owner),)),
        )
        if not behind:
            return
        pks, seqs = [row[0] for row in behind], [row[1] for row in behind]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(CATCH_UP_POLL)
            left = await self.fetch(
                "SELECT t.pk FROM unnest($1::bigint[], $2::bigint[]) AS t(pk, seq) JOIN agents a ON a.pk = t.pk "
                "LEFT JOIN line_words_progress p ON p.agent_pk = t.pk WHERE coalesce(p.high, 0) < t.seq LIMIT 1",
                pks,
                seqs,
            )
            if not left:
                return

    async def search_candidates(self, query: SearchQuery, before: int | None, limit: int) -> list[tuple[int, Line]]:
        """Up to `limit` lines holding every word of the query and passing its filters, newest first, with ids."""
        params: list[Any] = [
            tsquery_text(query.terms.required_words(), tag_groups(query)),
            _LAST if before is None else before,
            query.min_level,
        ]
        where = ["w.words @@ $1::tsquery", "w.id < $2", "l.level >= $3"]
        for test, value in (
            ("l.ts >= ${}", query.since),
            ("l.ts <= ${}", query.until),
            ("a.owner = ${}", None if query.owner is None else to_pg(query.owner)),
            ("w.agent_pk = ANY(${}::bigint[])", None if query.agent_pks is None else list(query.agent_pks)),
            ("a.labels @> ${}::jsonb", labels_to_pg(query.labels) if query.labels else None),
        ):
            if value is not None:
                params.append(value)
                where.append(test.format(len(params)))
        params.append(limit)
        sql = (
            "SELECT w.id, a.id, l.seq, l.ts, l.level, l.source, l.message, l.fields FROM line_words w "
            "JOIN lines l ON l.agent_pk = w.agent_pk AND l.seq = w.seq JOIN agents a ON a.pk = w.agent_pk "
            f"WHERE {' AND '.join(where)} ORDER BY w.id DESC LIMIT ${len(params)}"
        )
        rows = await self.fetch(sql, *params)
        return [(int(row[0]), line_from_row(row[1], tuple(row)[2:])) for row in rows]
