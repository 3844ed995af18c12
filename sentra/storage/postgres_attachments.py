"""Attachments in PostgreSQL: a table of bytea, written by the group commit beside the lines that carry them and
removed by a trigger with their agent, or with their lines when retention moves the agent's first_seq past them
(every path that removes an agent or trims its lines does one of those), whichever process does it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sentra.attachments import StoredAttachment
from sentra.storage.appends import AppendJob, BatchOutcome
from sentra.storage.postgres_schema import from_pg, to_pg

ATTACHMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    agent_pk BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_by_line ON attachments (agent_pk, seq);
CREATE OR REPLACE FUNCTION sentra_attachments_follow_agent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM attachments WHERE agent_pk = OLD.pk;
        RETURN OLD;
    END IF;
    DELETE FROM attachments WHERE agent_pk = NEW.pk AND seq < NEW.first_seq;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER attachments_follow_agent AFTER DELETE OR UPDATE OF first_seq ON agents
    FOR EACH ROW EXECUTE FUNCTION sentra_attachments_follow_agent();
"""


async def insert_attachments(conn: Any, jobs: list[AppendJob], out: BatchOutcome) -> None:
    """Store the attachments of the batch's committed jobs (a refused or replayed job stored no lines, so none)."""
    rows = []
    for job, lines in zip(jobs, out.lines, strict=True):
        if job.attachments and lines:
            pk, now = out.staged[job.agent_id].pk, time.time()
            for item in job.attachments:
                rows.append(
                    (
                        item.id,
                        pk,
                        lines[item.line].seq,
                        to_pg(item.name),
                        item.content_type,
                        len(item.data),
                        now,
                        item.data,
                    )
                )
    if not rows:
        return  # most commits: one test per job is all they pay
    await conn.executemany(
        "INSERT INTO attachments (id, agent_pk, seq, name, content_type, size, created_at, data) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        rows,
    )


class PostgresAttachments:
    """Reads of stored attachments, through the store's pool."""

    def __init__(self, fetch: Callable[..., Awaitable[list[Any]]]) -> None:
        self._fetch = fetch

    async def get(self, agent_pk: int, attachment_id: str) -> StoredAttachment | None:
        """The attachment `attachment_id` of the agent `agent_pk`, or None."""
        rows = await self._fetch(
            "SELECT name, content_type, data FROM attachments WHERE id = $1 AND agent_pk = $2", attachment_id, agent_pk
        )
        for name, content_type, data in rows:
            return StoredAttachment(from_pg(name), str(content_type), bytes(data))
        return None

    async def totals(self) -> tuple[int, int]:
        """How many attachments are stored, and their bytes."""
        rows = await self._fetch("SELECT count(*), coalesce(sum(size), 0) FROM attachments")
        return int(rows[0][0]), int(rows[0][1])
