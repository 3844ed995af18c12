"""Stop requests: the agents.stop_requested_by column (added to databases made before it) and the write that sets
it, for SQLite's writer thread and PostgreSQL's writer connection."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sentra.errors import Conflict, NotFound
from sentra.models import Agent
from sentra.storage.postgres_schema import to_pg
from sentra.storage.postgres_writer import locked_agent

# PostgreSQL: run with the schema at every start; a database made by an earlier version gains the column.
PG_STOP_SCHEMA = "ALTER TABLE agents ADD COLUMN IF NOT EXISTS stop_requested_by TEXT;"


def add_stop_column(conn: sqlite3.Connection) -> None:
    """Give the agents table of a SQLite database made by an earlier version its stop_requested_by column."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(agents)")}
    if "stop_requested_by" not in columns:
        conn.execute("ALTER TABLE agents ADD COLUMN stop_requested_by TEXT")


def stopped(current: Agent | None, agent_id: str, by: str) -> Agent | None:
    """The agent with the stop request of `by` set, or None when one is set already (the first requester stays);
    NotFound if it is gone, Conflict if it has finished (there is nothing left to stop)."""
    if current is None:
        raise NotFound(f"agent {agent_id!r} was deleted", code="agent_not_found")
    if current.finished:
        raise Conflict(
            f"agent {agent_id!r} is {current.status}; only a running agent can be stopped", code="agent_finished"
        )
    if current.stop_requested_by is not None:
        return None
    agent = current.copy()
    agent.stop_requested_by = by
    agent.updated_at = time.time()
    return agent


def request_stop_sqlite(db: sqlite3.Connection, current: Agent | None, agent_id: str, by: str) -> Agent:
    """In SQLite's writer thread: record the stop request; the agent as it now is."""
    agent = stopped(current, agent_id, by)
    if agent is None:
        assert current is not None
        return current
    db.execute("UPDATE agents SET stop_requested_by = ?, updated_at = ? WHERE pk = ?", (by, agent.updated_at, agent.pk))
    return agent


async def request_stop_pg(conn: Any, *, agent_id: str, by: str) -> Agent:
    """On PostgreSQL's writer connection: record the stop request (the row locked); the agent as it now is."""
    locked = await locked_agent(conn, agent_id)
    agent = stopped(locked, agent_id, by)
    if agent is None:
        assert locked is not None
        return locked
    await conn.execute(
        "UPDATE agents SET stop_requested_by = $1, updated_at = $2 WHERE pk = $3", to_pg(by), agent.updated_at, agent.pk
    )
    return agent
