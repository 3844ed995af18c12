"""Attachments in the SQLite file: a table of blobs, written by the group commit beside the lines that carry them
and removed by triggers with their agent, or with their lines when retention moves the agent's first_seq past
them (every path that removes an agent or trims its lines does one of those)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import aiosqlite

from sentra.attachments import StoredAttachment
from sentra.storage.appends import AppendJob, BatchOutcome

ATTACHMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    agent_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_by_line ON attachments (agent_pk, seq);
CREATE TRIGGER IF NOT EXISTS attachments_leave_with_agent AFTER DELETE ON agents BEGIN
    DELETE FROM attachments WHERE agent_pk = OLD.pk;
END;
CREATE TRIGGER IF NOT EXISTS attachments_leave_with_lines AFTER UPDATE OF first_seq ON agents BEGIN
    DELETE FROM attachments WHERE agent_pk = NEW.pk AND seq < NEW.first_seq;
END;
"""


def insert_attachments(db: sqlite3.Connection, jobs: list[AppendJob], out: BatchOutcome) -> int:
    """Store the attachments of the batch's committed jobs (a refused or replayed job stored no lines, so none);
    the bytes written."""
    rows = []
    for job, lines in zip(jobs, out.lines, strict=True):
        if job.attachments and lines:
            pk, now = out.staged[job.agent_id].pk, time.time()
            for item in job.attachments:
                rows.append(
                    (item.id, pk, lines[item.line].seq, item.name, item.content_type, len(item.data), now, item.data)
                )
    if not rows:
        return 0  # most commits: one test per job is all they pay
    db.executemany(
        "INSERT INTO attachments (id, agent_pk, seq, name, content_type, size, created_at, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return sum(row[5] for row in rows)


class SqliteAttachments:
    """Reads of stored attachments, on the store's read connection."""

    def __init__(self, reader: Callable[[], aiosqlite.Connection]) -> None:
        self._reader = reader

    async def get(self, agent_pk: int, attachment_id: str) -> StoredAttachment | None:
        """The attachment `attachment_id` of the agent `agent_pk`, or None."""
        rows = await self._reader().execute_fetchall(
            "SELECT name, content_type, data FROM attachments WHERE id = ? AND agent_pk = ?",
            (attachment_id, agent_pk),
        )
        for name, content_type, data in rows:
            return StoredAttachment(str(name), str(content_type), bytes(data))
        return None

    async def totals(self) -> tuple[int, int]:
        """How many attachments are stored, and their bytes."""
        rows = list(await self._reader().execute_fetchall("SELECT count(*), coalesce(sum(size), 0) FROM attachments"))
        return int(rows[0][0]), int(rows[0][1])
