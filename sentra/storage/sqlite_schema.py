"""The SQLite schema and the row ↔ record conversions shared by the store's reader and writer."""

from __future__ import annotations

import json
from typing import Any

from sentra.lines import LEVEL_BY_NUMBER, Line
from sentra.models import Agent
from sentra.storage.sqlite_summary import SUMMARY_COLUMN
from sentra.summary import RunSummary

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
-- Retention looks finished agents up by age. Running agents stay out of the index, so the commit that moves a
-- running agent's last_seq and updated_at writes no index page (databases of earlier versions drop theirs).
DROP INDEX IF EXISTS agents_by_status;
CREATE INDEX IF NOT EXISTS agents_finished ON agents (updated_at) WHERE status != 'running';
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
-- database_id ties the search index's file to this database; agent_pk_floor is the highest agent pk ever given,
-- so a new agent never takes the pk of a deleted one (the index may still hold the deleted one's lines).
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

AGENT_COLUMNS = (
    "pk, id, name, owner, status, reason, labels, created_at, updated_at, last_line_at, first_seq, last_seq, "
    "stop_requested_by, "
    f"{SUMMARY_COLUMN}"
)


def agent_from_row(row: tuple[Any, ...]) -> Agent:
    """An Agent from a row of AGENT_COLUMNS."""
    row, summary = row[:-1], row[-1]  # the summary column comes last
    pk, agent_id, name, owner, status, reason, labels, created, updated, last_line_at, first_seq, last_seq, stop = row
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
        stop_requested_by=stop,
        summary=RunSummary.from_wire(summary),
    )


def line_from_row(agent_id: str, row: tuple[Any, ...]) -> Line:
    """A Line from a row of (seq, ts, level, source, message, fields)."""
    seq, ts, level, source, message, fields = row
    return Line(
        agent_id,
        seq,
        ts,
        LEVEL_BY_NUMBER.get(level, "INFO"),
        message,
        source,
        json.loads(fields) if fields else {},
    )
