"""Run summaries and the volume index in SQLite, written in the transactions that store, trim and delete lines.

agent_summary holds one row per agent (lines per level, first error, usage, end time); agent_volume counts lines
per agent, granule (1 s up to an hour: sentra/summary.py), granule start and level. Each group commit adds its
tally with one UPSERT per agent and one many-row UPSERT of volume counts; retention subtracts what it deletes. A
database made before these tables existed gets a row per agent marking every stored line as not yet counted
(`counted_below`), and `backfill_step` counts them in the background, a slice per transaction, newest first.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from typing import Any

import aiosqlite

from sentra.models import Agent
from sentra.storage.sqlite_statements import statement_sizes
from sentra.summary import ERROR_LEVEL, RunSummary, Tally, add_volume
from sentra.volume import VolumeSpan

SUMMARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_summary (
    agent_pk INTEGER PRIMARY KEY,
    debug INTEGER NOT NULL DEFAULT 0,
    info INTEGER NOT NULL DEFAULT 0,
    warning INTEGER NOT NULL DEFAULT 0,
    error INTEGER NOT NULL DEFAULT 0,
    critical INTEGER NOT NULL DEFAULT 0,
    first_error_seq INTEGER,
    tokens REAL NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    usage_lines INTEGER NOT NULL DEFAULT 0,
    ended_at REAL,
    counted_below INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS agent_summary_backfill ON agent_summary (counted_below) WHERE counted_below > 0;
CREATE TABLE IF NOT EXISTS agent_volume (
    agent_pk INTEGER NOT NULL,
    granule INTEGER NOT NULL,
    start INTEGER NOT NULL,
    level INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (agent_pk, granule, start, level)
) WITHOUT ROWID;
"""

# The summary as agent_from_row reads it: one JSON array, so AGENT_COLUMNS stays one list of columns.
# Reals as 17-digit text: SQLite's JSON writes 15 digits, which would round ended_at (a time.time()) and usage.
SUMMARY_COLUMN = (
    "(SELECT json_array(debug, info, warning, error, critical, first_error_seq, printf('%!.17g', tokens), "
    "printf('%!.17g', cost), usage_lines, CASE WHEN ended_at IS NOT NULL THEN printf('%!.17g', ended_at) END)"
    " FROM agent_summary WHERE agent_summary.agent_pk = agents.pk)"
)
_RETURNING = "RETURNING debug, info, warning, error, critical, first_error_seq, tokens, cost, usage_lines, ended_at"
# Lines counted per backfill transaction: the writer is busy for a few ms at a time, between group commits.
BACKFILL_LINES = 20_000
_USAGE = (
    "SELECT count(*), total(t), total(c) FROM (SELECT "
    "CASE WHEN json_type(fields, '$.tokens') IN ('integer', 'real') THEN json_extract(fields, '$.tokens') END AS t, "
    "CASE WHEN json_type(fields, '$.cost') IN ('integer', 'real') THEN json_extract(fields, '$.cost') END AS c "
    "FROM lines WHERE agent_pk = ? AND seq >= ? AND seq < ? AND fields IS NOT NULL "
    "AND (fields LIKE '%tokens%' OR fields LIKE '%cost%')) WHERE t IS NOT NULL OR c IS NOT NULL"
)


def _summary(row: Any) -> RunSummary:
    return RunSummary.from_wire(list(row))


def open_summaries(db: sqlite3.Connection) -> None:
    """Create the tables; on a database made without them, mark every agent's stored lines as not yet counted."""
    existed = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'agent_summary'").fetchone() is not None
    db.execute("BEGIN IMMEDIATE")
    try:
        # Statement by statement: executescript would commit first, and the tables and their first rows belong
        # to one transaction (a crash between them would leave older lines never counted).
        for statement in SUMMARY_SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        if not existed:
            db.execute(
                "INSERT OR IGNORE INTO agent_summary (agent_pk, ended_at, counted_below) "
                "SELECT pk, CASE WHEN status != 'running' THEN updated_at END, last_seq + 1 FROM agents"
            )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def add_tally(db: sqlite3.Connection, pk: int, tally: Tally, sign: int = 1) -> RunSummary:
    """Add (sign 1) or subtract (sign -1) a tally to the agent's summary and volume; the new summary."""
    counts = [sign * count for count in tally.counts()]
    row = db.execute(
        "INSERT INTO agent_summary AS s (agent_pk, debug, info, warning, error, critical, first_error_seq, tokens, "
        "cost, usage_lines) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_pk) DO UPDATE SET "
        "debug = s.debug + excluded.debug, info = s.info + excluded.info, warning = s.warning + excluded.warning, "
        "error = s.error + excluded.error, critical = s.critical + excluded.critical, "
        "first_error_seq = coalesce(min(s.first_error_seq, excluded.first_error_seq), s.first_error_seq, "
        "excluded.first_error_seq), tokens = s.tokens + excluded.tokens, cost = s.cost + excluded.cost, "
        f"usage_lines = s.usage_lines + excluded.usage_lines {_RETURNING}",
        (
            pk,
            *counts,
            tally.first_error_seq if sign > 0 else None,
            sign * tally.tokens,
            sign * tally.cost,
            sign * tally.usage_lines,
        ),
    ).fetchone()
    rows = [value for (granule, start, level), n in tally.volume.items() for value in (granule, start, level, sign * n)]
    # A few statements of many rows, not one step per row: each step gives up the GIL, and taking it back from a
    # busy event loop can cost a whole switch interval (see sqlite_writer.INSERT_ROWS).
    first = 0
    for size in statement_sizes(len(rows) // 4, VOLUME_ROWS):
        db.execute(_volume_sql(size), (pk, *rows[first : first + size * 4]))
        first += size * 4
    if sign < 0:
        db.execute("DELETE FROM agent_volume WHERE agent_pk = ? AND n <= 0", (pk,))
    return _summary(row)


def mark_ended(db: sqlite3.Connection, agent: Agent) -> None:
    """Record the time a run finished (its status changed to completed or failed); sets agent.summary."""
    row = db.execute(
        "INSERT INTO agent_summary AS s (agent_pk, ended_at) VALUES (?, ?) "
        f"ON CONFLICT (agent_pk) DO UPDATE SET ended_at = excluded.ended_at {_RETURNING}",
        (agent.pk, agent.updated_at),
    ).fetchone()
    agent.summary = _summary(row)


def forget(db: sqlite3.Connection, pk: int) -> None:
    """Remove a deleted agent's summary and volume."""
    db.execute("DELETE FROM agent_summary WHERE agent_pk = ?", (pk,))
    db.execute("DELETE FROM agent_volume WHERE agent_pk = ?", (pk,))


def stored_tally(db: sqlite3.Connection, pk: int, low: int, high: int) -> Tally:
    """The tally of the agent's stored lines with low <= seq < high, counted by SQL."""
    tally = Tally()
    rows = db.execute(
        "SELECT CAST(ts AS INTEGER) AS second, level, count(*) FROM lines "
        "WHERE agent_pk = ? AND seq >= ? AND seq < ? GROUP BY second, level",
        (pk, low, high),
    ).fetchall()
    for second, level, count in rows:
        tally.levels[level] += count
        add_volume(tally.volume, second, level, count)
    if any(level >= ERROR_LEVEL for level in tally.levels):
        tally.first_error_seq = db.execute(
            "SELECT min(seq) FROM lines WHERE agent_pk = ? AND seq >= ? AND seq < ? AND level >= ?",
            (pk, low, high, ERROR_LEVEL),
        ).fetchone()[0]
    usage_lines, tokens, cost = db.execute(_USAGE, (pk, low, high)).fetchone()
    tally.usage_lines, tally.tokens, tally.cost = usage_lines, float(tokens), float(cost)
    return tally


def trimmed(db: sqlite3.Connection, before: Agent, agent: Agent) -> None:
    """Before retention deletes the lines below agent.first_seq: take the counted ones out of the summary."""
    counted_below = db.execute("SELECT counted_below FROM agent_summary WHERE agent_pk = ?", (agent.pk,)).fetchone()
    low = max(before.first_seq, counted_below[0] if counted_below else 0)
    if low < agent.first_seq:
        agent.summary = add_tally(db, agent.pk, stored_tally(db, agent.pk, low, agent.first_seq), -1)
    first_error = agent.summary.first_error_seq
    if first_error is not None and first_error < agent.first_seq:
        # The first error was retention's: the next one among the counted lines, if any.
        row = db.execute(
            "UPDATE agent_summary SET first_error_seq = (SELECT min(seq) FROM lines WHERE agent_pk = ? AND seq >= ? "
            f"AND level >= ?) WHERE agent_pk = ? {_RETURNING}",
            (agent.pk, max(agent.first_seq, low), ERROR_LEVEL, agent.pk),
        ).fetchone()
        agent.summary = _summary(row)


def backfill_step(db: sqlite3.Connection) -> tuple[str, RunSummary] | None:
    """Count one slice of lines an older version stored uncounted; (agent id, new summary), or None when done."""
    row = db.execute(
        "SELECT s.agent_pk, s.counted_below, a.first_seq, a.id FROM agent_summary s JOIN agents a ON a.pk = s.agent_pk "
        "WHERE s.counted_below > 0 LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    pk, below, first_seq, agent_id = row
    low = max(first_seq, below - BACKFILL_LINES)
    if low < below:
        add_tally(db, pk, stored_tally(db, pk, low, below))
    low = 0 if low <= first_seq else low
    summary = db.execute(f"UPDATE agent_summary SET counted_below = ? WHERE agent_pk = ? {_RETURNING}", (low, pk))
    return agent_id, _summary(summary.fetchone())


async def volume_rows(reader: aiosqlite.Connection, pk: int, span: VolumeSpan) -> list[tuple[Any, ...]]:
    """(bucket number, level, count) of the agent's lines in `span`, from the volume index."""
    rows = await reader.execute_fetchall(
        "SELECT CAST((start - ?) / ? AS INTEGER) AS bucket, level, sum(n) FROM agent_volume "
        "WHERE agent_pk = ? AND granule = ? AND start >= ? AND start <= ? GROUP BY bucket, level",
        (span.start, span.width, pk, span.granule, span.first_row(), span.last_row()),
    )
    return [tuple(row) for row in rows]


async def stored_seconds(reader: aiosqlite.Connection, pk: int) -> tuple[int | None, int | None]:
    """The first and last second holding a stored line of the agent (None, None without lines)."""
    # Two index lookups: SQLite reads min() and max() from the index only when the query has one of them.
    rows = await reader.execute_fetchall(
        "SELECT (SELECT start FROM agent_volume WHERE agent_pk = ? AND granule = 1 ORDER BY start LIMIT 1), "
        "(SELECT start FROM agent_volume WHERE agent_pk = ? AND granule = 1 ORDER BY start DESC LIMIT 1)",
        (pk, pk),
    )
    first, last = next(iter(rows))
    return first, last


VOLUME_ROWS = 1024  # volume rows in one statement at most


@cache
def _volume_sql(rows: int) -> str:
    """An upsert of `rows` volume rows of one agent (?1), four values each."""
    values = ",".join(["(?1, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO agent_volume AS v (agent_pk, granule, start, level, n) VALUES {values} "
        "ON CONFLICT (agent_pk, granule, start, level) DO UPDATE SET n = v.n + excluded.n"
    )
