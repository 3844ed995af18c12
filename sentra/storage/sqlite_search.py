"""The word index on SQLite: an FTS5 table in a file of its own beside the database (`<db>-search`), written by its
own connection and thread, so the group commit never waits for it and never shares its lock.

FTS5's `ascii` tokenizer splits where sentra.storage.words does for ASCII text (runs of ASCII letters and digits,
folded), and keeps every other character in a token: so an ASCII message without ESC is indexed as it is, by SQLite
alone, and other lines as the words sentra.storage.words makes of them (a function SQLite calls). `detail=none`: the
index holds which lines have which words, not where, and the rule checks phrases. The words are kept in
`line_refs` (FTS5's external content), which FTS5 needs to remove a line again (SQLite 3.40 has no
contentless_delete). Why FTS5 words, measured: docs/performance.md#search.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sentra.storage.search_index import (
    AGENT_RUN,
    LIVE_BASE,
    TAG,
    Span,
    agent_tag,
    build_spans,
    live_spans,
    rule_words,
)
from sentra.storage.words import WORDS_VERSION, words_text

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS line_refs (
    id INTEGER PRIMARY KEY, agent_pk INTEGER NOT NULL, seq INTEGER NOT NULL, words TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS line_words USING fts5(
    words, content='line_refs', content_rowid='id', columnsize=0, detail=none, tokenize='ascii'
);
-- Where every MARK_EVERY-th seq of an agent is in the index: a read of one agent's seqs starts and ends at most
-- that many of its lines away (an index of every line's seq would cost a page write per agent per batch).
CREATE TABLE IF NOT EXISTS seq_marks (
    agent_pk INTEGER NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (agent_pk, seq)
) WITHOUT ROWID;
-- Per agent, the seqs in the index: low..high. Lines below low were stored before the index and are being added.
CREATE TABLE IF NOT EXISTS progress (agent_pk INTEGER PRIMARY KEY, low INTEGER NOT NULL, high INTEGER NOT NULL);
"""
MARK_EVERY = 256
# While the store starts the main database's WAL over, a batch waits this long at most before reading it anyway.
HOLD_MAX = 0.25
# A batch's lines, read from the database with their words and tags: `spans` is a CTE of (pk, first, last, tag);
# lines are ordered by time across agents, by a running maximum (minimum, going back) within an agent so that its
# ids follow its seqs. A line's text is its message and its field values as sentra.storage.words writes them (JSON's
# true, false, null; integers; reals as Python writes them, the one thing SQL asks Python for); an integer past 64
# bits leaves it NULL, and the line to the rule. ASCII text without ESC is its own words for the `ascii` tokenizer
# (the rule drops escape sequences, which the tokenizer would split into words); SQLite's length() of text counts
# characters, of a blob bytes.
# `picked` is MATERIALIZED: flattened into the INSERT, a line's text would be made again for each of the five times
# the INSERT names it (json_tree included: 10.3 against 4.0 us a line).
_VALUE = (
    "CASE j.type WHEN 'text' THEN j.atom WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
    "WHEN 'real' THEN sentra_number(j.atom) WHEN 'integer' THEN CASE typeof(j.atom) WHEN 'integer' THEN "
    "CAST(j.atom AS TEXT) END END"
)


def _field_text(fields: str) -> str:
    """SQL for the text of the `fields` column's values (see _BATCH)."""
    return (
        "(SELECT CASE WHEN sum(v IS NULL) = 0 THEN group_concat(v, char(10)) WHEN count(*) = 0 THEN '' END FROM "
        f"(SELECT {_VALUE} AS v FROM json_tree({fields}) AS j WHERE j.type NOT IN ('object', 'array')))"
    )


# Agents send the same few `fields` objects again and again (a route and a status), and reading one with json_tree
# costs more than the rest of its line's indexing: each distinct `fields` text is read once into `field_texts`
# (a temporary table of this connection), whose text the batch then looks up. The table is emptied when it holds
# FIELD_TEXTS rows. Where fields seldom repeat, the table costs more than it saves (one agent's lines 7.3 -> 8.1 us
# each, two agents' 7.3 -> 10.2): after a batch with more new fields texts than half its lines, the next
# SKIP_FIELD_TEXTS batches read fields as they come. Fields longer than FIELD_TEXT_CHARS are always read as they
# come, so that the table stays small (a line's fields may be 256 KiB).
FIELD_TEXTS = 20_000
FIELD_TEXT_CHARS = 1000
SKIP_FIELD_TEXTS = 16
_FIELD_TEXTS_SCHEMA = "CREATE TEMP TABLE IF NOT EXISTS field_texts (fields TEXT PRIMARY KEY, text TEXT) WITHOUT ROWID"
_NEW_FIELD_TEXTS = (
    "WITH spans(pk, first, last, tag) AS (VALUES {spans}) INSERT INTO temp.field_texts (fields, text) "
    f"SELECT m.fields, {_field_text('m.fields')} FROM (SELECT DISTINCT l.fields FROM spans s JOIN src.lines l "
    "ON l.agent_pk = s.pk AND l.seq >= s.first AND l.seq <= s.last WHERE length(l.fields) <= {max_chars} "
    "AND NOT EXISTS (SELECT 1 FROM temp.field_texts c WHERE c.fields = l.fields)) AS m"
)
_BATCH = (
    "WITH spans(pk, first, last, tag) AS (VALUES {spans}), picked AS MATERIALIZED (SELECT l.agent_pk, l.seq, l.level, "
    "l.message, l.fields, s.tag, {t} AS t, "
    "CASE WHEN l.fields IS NULL THEN l.message ELSE l.message || char(10) || {fields_text} END AS text "
    "FROM spans s JOIN src.lines l ON l.agent_pk = s.pk AND l.seq >= s.first AND l.seq <= s.last {fields_join}) "
    "INSERT INTO line_refs (id, agent_pk, seq, words) "
    "SELECT ? {sign} ({n} - 1), agent_pk, seq, "
    "CASE WHEN text IS NULL THEN sentra_words(message, fields) "
    "WHEN length(CAST(text AS BLOB)) = length(text) AND instr(text, char(27)) = 0 THEN text "
    "ELSE sentra_text(text) END "
    f"|| ' {TAG}a' || agent_pk || ' {TAG}l' || level || ' ' || tag FROM picked"
)
# A batch's lines numbered (`t`, then `n`, in _BATCH): across agents by time, within an agent by a running maximum
# (minimum, going back) of it so that its ids follow its seqs. A batch of one agent's lines is numbered by its seqs
# alone, without the two sorts (which cost more than the rest of a line's indexing): its ids are the span's, one
# per seq, and seqs a trim removed meanwhile leave theirs unused.
_ACROSS_AGENTS = {
    "t": "{running}(l.ts) OVER (PARTITION BY l.agent_pk ORDER BY l.seq {direction})",
    "n": "row_number() OVER (ORDER BY t {direction}, agent_pk, seq {direction})",
}
_ONE_AGENT = {"t": "l.seq - s.first + 1", "n": "t"}
_ONE_AGENT_BACK = {"t": "s.last - l.seq + 1", "n": "t"}
_LOOKED_UP = {
    "fields_text": f"CASE WHEN c.fields IS NULL THEN {_field_text('l.fields')} ELSE c.text END",
    "fields_join": "LEFT JOIN temp.field_texts c ON c.fields = l.fields",
}
_READ = {"fields_text": _field_text("l.fields"), "fields_join": ""}


def search_path(db_path: Path) -> Path:
    """The index's file beside the database."""
    return Path(f"{db_path}-search")


class IndexWriterConnection:
    """The index's write side, in its own thread: reads new lines from the database (attached read-only) and adds
    them, removes what was deleted. Implements search_index.IndexTarget."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = search_path(db_path)
        self.conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._next_live = LIVE_BASE
        self._next_back = LIVE_BASE - 1
        self._field_texts = 0  # rows in field_texts
        self._skip_field_texts = 0  # batches left that read fields without field_texts
        # Calls in the thread (each reads the attached database), and until when none may start (see `hold`).
        self._running = 0
        self._held_until = 0.0
        self._released = asyncio.Event()

    async def open(self, database_id: str) -> None:
        """Open (creating, or rebuilding if it belongs to another database) the index file."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentra-index")
        await self._in_thread(lambda: self._open(database_id))

    async def close(self) -> None:
        """Close the connection and its thread."""
        if self._executor is not None:
            await self._in_thread(self._close)
            self._executor.shutdown(wait=True)
            self._executor = None

    def hold(self) -> bool:
        """Start no read of the database until `release` (or HOLD_MAX s); True if none is in progress.

        A read holds a snapshot of the main database's WAL, and the WAL starts over only when a checkpoint copied
        every frame and no reader is left in it: the store checkpoints for the restart between two batches.
        """
        self._held_until = asyncio.get_running_loop().time() + HOLD_MAX
        self._released.clear()
        return self._running == 0

    def release(self) -> None:
        """Let reads start again."""
        self._held_until = 0.0
        self._released.set()

    async def _in_thread(self, work: Callable[[], T]) -> T:
        assert self._executor is not None, "index is not open"
        loop = asyncio.get_running_loop()
        while (left := self._held_until - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._released.wait(), left)
            except TimeoutError:
                break
        self._running += 1
        try:
            return await loop.run_in_executor(self._executor, work)
        finally:
            self._running -= 1

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        assert self.conn is not None, "index is not open"
        return self.conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path.resolve().as_uri(), isolation_level=None, check_same_thread=False, uri=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        # What SQL cannot do as sentra.storage.words does (see _BATCH).
        conn.create_function("sentra_words", 2, rule_words, deterministic=True)
        conn.create_function("sentra_text", 1, words_text, deterministic=True)
        conn.create_function("sentra_number", 1, json.dumps, deterministic=True)
        return conn

    def _open(self, database_id: str) -> None:
        conn = self._connect()
        row = version = None
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()
            version = conn.execute("SELECT value FROM meta WHERE key = 'words_version'").fetchone()
        except sqlite3.OperationalError:
            pass  # a new file
        if row is not None and (row[0] != database_id or version != (str(WORDS_VERSION),)):
            # The index of another database (this one was restored or replaced), or holding the words of an older
            # rule: built again from its lines.
            conn.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            conn = self._connect()
            row = None
        self.conn = conn
        conn.executescript(SCHEMA)
        conn.execute(_FIELD_TEXTS_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS src", (f"{self.db_path.resolve().as_uri()}?mode=ro",))
        if row is None:
            # Every line stored so far is added in the background, newest first; new ones as they come.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('database_id', ?), ('words_version', ?)",
                (database_id, str(WORDS_VERSION)),
            )
            conn.execute("INSERT OR REPLACE INTO progress SELECT pk, last_seq + 1, last_seq FROM src.agents")
            conn.execute("COMMIT")
        low, high = conn.execute("SELECT min(id), max(id) FROM line_refs").fetchone()
        self._next_live = max(LIVE_BASE, (high or 0) + 1)
        self._next_back = min(LIVE_BASE - 1, (low if low is not None else LIVE_BASE) - 1)

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # ---- adding lines --------------------------------------------------------------------------

    async def live_batch(self, dirty: set[int] | None, max_lines: int) -> tuple[int, bool]:
        """Index new lines of the agents in `dirty` (None: any agent): (lines indexed, more left)."""
        return await self._in_thread(lambda: self._live(dirty, max_lines))

    def _live(self, dirty: Collection[int] | None, max_lines: int) -> tuple[int, bool]:
        where = "(p.agent_pk IS NULL OR a.last_seq > p.high)"
        params: list[Any] = []
        if dirty is not None:
            if not dirty:
                return 0, False
            where += f" AND a.pk IN ({','.join('?' * len(dirty))})"
            params.extend(dirty)
        behind = self.db.execute(
            "SELECT a.pk, a.owner, a.first_seq, a.last_seq, p.high, p.low FROM src.agents a "
            f"LEFT JOIN progress p ON p.agent_pk = a.pk WHERE {where} AND a.last_seq >= a.first_seq",
            params,
        ).fetchall()
        if not behind:
            return 0, False
        spans, more = live_spans([row[:5] for row in behind], max_lines)
        lows = {pk: first_seq if low is None else low for pk, _owner, first_seq, _last, _high, low in behind}
        count, taken = self._write(
            spans,
            self._next_live,
            descending=False,
            progress={span.agent_pk: (lows[span.agent_pk], span.last) for span in spans},
        )
        self._next_live += taken
        return count, more

    async def backfill_batch(self, max_lines: int) -> int:
        """Index lines stored before the index existed, newest first; how many (0: none left)."""
        return await self._in_thread(lambda: self._backfill(max_lines))

    def _backfill(self, max_lines: int) -> int:
        pending = self.db.execute(
            "SELECT a.pk, a.owner, a.first_seq, p.low, p.high FROM progress p JOIN src.agents a ON a.pk = p.agent_pk "
            "WHERE p.low > a.first_seq ORDER BY a.last_line_at DESC LIMIT ?",
            (max(1, max_lines // AGENT_RUN),),
        ).fetchall()
        if not pending:
            return 0
        spans = build_spans([(pk, owner, first, low) for pk, owner, first, low, _high in pending], max_lines)
        highs = {pk: high for pk, *_, high in pending}
        progress = {span.agent_pk: (span.first, highs[span.agent_pk]) for span in spans}
        count, taken = self._write(spans, self._next_back, descending=True, progress=progress)
        self._next_back -= taken
        return max(count, 1)

    def _write(
        self, spans: list[Span], start: int, *, descending: bool, progress: dict[int, tuple[int, int]]
    ) -> tuple[int, int]:
        """Add the lines of `spans` with ids from `start` (counting down if `descending`), and record each agent's
        indexed seqs, in one transaction; how many lines, and how many ids they took."""
        db = self.db
        sql_spans = ",".join(["(?, ?, ?, ?)"] * len(spans))
        order = {"running": "min" if descending else "max", "direction": "DESC" if descending else ""}
        numbering = (_ONE_AGENT_BACK if descending else _ONE_AGENT) if len(spans) == 1 else _ACROSS_AGENTS
        looked_up = self._skip_field_texts == 0
        sql = _BATCH.format(
            spans=sql_spans,
            t=numbering["t"].format(**order),
            n=numbering["n"].format(**order),
            sign="-" if descending else "+",
            **(_LOOKED_UP if looked_up else _READ),
        )
        span_values = [value for span in spans for value in span]
        if self._field_texts >= FIELD_TEXTS:
            db.execute("DELETE FROM temp.field_texts")
            self._field_texts = 0
        new_texts = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if looked_up:
                db.execute(_NEW_FIELD_TEXTS.format(spans=sql_spans, max_chars=FIELD_TEXT_CHARS), span_values)
                new_texts = int(db.execute("SELECT changes()").fetchone()[0])
                self._field_texts += new_texts
            db.execute(sql, [*span_values, start])
            count = int(db.execute("SELECT changes()").fetchone()[0])
            taken = spans[0].last - spans[0].first + 1 if len(spans) == 1 else count
            low, high = (start - taken + 1, start) if descending else (start, start + taken - 1)
            db.execute(
                "INSERT INTO line_words (rowid, words) SELECT id, words FROM line_refs WHERE id BETWEEN ? AND ?",
                (low, high),
            )
            db.execute(
                "INSERT OR REPLACE INTO seq_marks (agent_pk, seq, id) SELECT agent_pk, seq, id FROM line_refs "
                f"WHERE id BETWEEN ? AND ? AND seq % {MARK_EVERY} = 0",
                (low, high),
            )
            db.executemany(
                "INSERT OR REPLACE INTO progress (agent_pk, low, high) VALUES (?, ?, ?)",
                [(pk, first, last) for pk, (first, last) in progress.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if not looked_up:
            self._skip_field_texts -= 1
        elif new_texts * 2 > count:
            self._skip_field_texts = SKIP_FIELD_TEXTS
        return count, taken

    async def backlog(self) -> int:
        """Lines stored before the index existed and not yet in it."""
        return await self._in_thread(
            lambda: int(
                self.db.execute(
                    "SELECT coalesce(sum(p.low - a.first_seq), 0) FROM progress p "
                    "JOIN src.agents a ON a.pk = p.agent_pk WHERE p.low > a.first_seq"
                ).fetchone()[0]
            )
        )

    # ---- removing lines ------------------------------------------------------------------------

    async def purge_batch(self, max_lines: int) -> int:
        """Remove entries of deleted agents and trimmed lines; how many (0: none left)."""
        return await self._in_thread(lambda: self._purge(max_lines))

    def _purge(self, max_lines: int) -> int:
        db = self.db
        found = db.execute(
            "SELECT p.agent_pk, a.first_seq, a.pk IS NULL OR a.last_seq < p.high FROM progress p "
            "LEFT JOIN src.agents a ON a.pk = p.agent_pk "
            "WHERE a.pk IS NULL OR a.last_seq < p.high OR (a.first_seq > p.low AND p.high >= p.low) LIMIT 1"
        ).fetchone()
        if found is None:
            return 0
        pk, first_seq, whole = found
        # A deleted agent loses every entry, and so does one whose lines are not those the index holds (a database
        # restored from a backup: its lines are added again); a trimmed one loses those before its first seq.
        # An agent's ids follow its seqs, so the oldest entries come first.
        ids = []
        for entry_id, seq in db.execute(
            "SELECT r.id, r.seq FROM line_words(?) f JOIN line_refs r ON r.id = f.rowid ORDER BY f.rowid LIMIT ?",
            (f'"{agent_tag(pk)}"', max_lines),
        ):
            if not whole and seq >= first_seq:
                break
            ids.append(entry_id)
        done = len(ids) < max_lines
        db.execute("BEGIN IMMEDIATE")
        try:
            if ids:
                marks = ",".join("?" * len(ids))
                db.execute(
                    "INSERT INTO line_words (line_words, rowid, words) "
                    f"SELECT 'delete', id, words FROM line_refs WHERE id IN ({marks})",
                    ids,
                )
                db.execute(f"DELETE FROM line_refs WHERE id IN ({marks})", ids)
            if done and whole:
                db.execute("DELETE FROM seq_marks WHERE agent_pk = ?", (pk,))
                db.execute("DELETE FROM progress WHERE agent_pk = ?", (pk,))
            elif done:
                db.execute("DELETE FROM seq_marks WHERE agent_pk = ? AND seq < ?", (pk, first_seq))
                db.execute(
                    "UPDATE progress SET low = max(low, ?), high = max(high, ? - 1) WHERE agent_pk = ?",
                    (first_seq, first_seq, pk),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return max(len(ids), 1)
