"""Share links in storage: the links made for each agent (table shares), and revoking one, which also records its
token id in revoked_tokens, so every process refuses the token within a second (serve.py's revocation watch)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiosqlite

from sentra.storage.postgres_schema import from_pg, to_pg

SQLITE_SHARE_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (
    id TEXT PRIMARY KEY,
    agent_pk INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS shares_by_agent ON shares (agent_pk);
"""

PG_SHARE_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (
    id TEXT PRIMARY KEY,
    agent_pk BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS shares_by_agent ON shares (agent_pk);
"""

SHARE_COLUMNS = "id, agent_pk, agent_id, created_by, created_at, expires_at"


@dataclass(frozen=True, slots=True)
class Share:
    """One share link of an agent: its id (the token's jti), who made it, when, and until when it reads."""

    id: str
    agent_pk: int
    agent_id: str
    created_by: str
    created_at: float
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        """The link as GET /api/agents/{id}/shares lists it (its token is shown once, when it is made)."""
        return {
            "id": self.id,
            "agent": self.agent_id,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


class ShareStore(Protocol):
    """The share links of agents, on either backend."""

    async def add(self, share: Share) -> None:
        """Record a new link (and forget links that have expired)."""

    async def of_agent(self, agent_pk: int) -> list[Share]:
        """The agent's links that have not expired, oldest first."""

    async def get(self, share_id: str) -> Share | None:
        """The link with this id, expired or not, if it was not revoked."""

    async def revoke(self, share_id: str) -> None:
        """Remove the link and revoke its token."""


class SqliteShares:
    """ShareStore on the SQLite store: reads on its read connection, writes through its write queue."""

    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        reader: Callable[[], aiosqlite.Connection],
        submit: Callable[[Callable[[], Any], Callable[[Any], Any]], Awaitable[Any]],
    ) -> None:
        self._db = db
        self._reader = reader
        self._submit = submit

    async def add(self, share: Share) -> None:
        """Record a new link (and forget links that have expired)."""

        def work() -> None:
            db = self._db()
            db.execute("DELETE FROM shares WHERE expires_at < ?", (time.time(),))
            db.execute(f"INSERT INTO shares ({SHARE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", _values(share))

        await self._submit(work, _same)

    async def of_agent(self, agent_pk: int) -> list[Share]:
        """The agent's links that have not expired, oldest first."""
        sql = f"SELECT {SHARE_COLUMNS} FROM shares WHERE agent_pk = ? AND expires_at > ? ORDER BY created_at, id"
        rows = await self._reader().execute_fetchall(sql, (agent_pk, time.time()))
        return [Share(*row) for row in rows]

    async def get(self, share_id: str) -> Share | None:
        """The link with this id, expired or not, if it was not revoked."""
        rows = list(
            await self._reader().execute_fetchall(f"SELECT {SHARE_COLUMNS} FROM shares WHERE id = ?", (share_id,))
        )
        return Share(*rows[0]) if rows else None

    async def revoke(self, share_id: str) -> None:
        """Remove the link and revoke its token, in one transaction."""

        def work() -> None:
            db = self._db()
            db.execute("DELETE FROM shares WHERE id = ?", (share_id,))
            db.execute("INSERT OR IGNORE INTO revoked_tokens (jti, revoked_at) VALUES (?, ?)", (share_id, time.time()))

        await self._submit(work, _same)


class PostgresShares:
    """ShareStore on the PostgreSQL store: reads from its pool, writes through its write queue."""

    def __init__(
        self,
        fetch: Callable[..., Awaitable[list[Any]]],
        submit: Callable[[Callable[[Any], Awaitable[Any]], Callable[[Any], Any]], Awaitable[Any]],
    ) -> None:
        self._fetch = fetch
        self._submit = submit

    async def add(self, share: Share) -> None:
        """Record a new link (and forget links that have expired)."""

        async def work(conn: Any) -> None:
            await conn.execute("DELETE FROM shares WHERE expires_at < $1", time.time())
            await conn.execute(
                f"INSERT INTO shares ({SHARE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                share.id,
                share.agent_pk,
                to_pg(share.agent_id),
                to_pg(share.created_by),
                share.created_at,
                share.expires_at,
            )

        await self._submit(work, _same)

    async def of_agent(self, agent_pk: int) -> list[Share]:
        """The agent's links that have not expired, oldest first."""
        rows = await self._fetch(
            f"SELECT {SHARE_COLUMNS} FROM shares WHERE agent_pk = $1 AND expires_at > $2 ORDER BY created_at, id",
            agent_pk,
            time.time(),
        )
        return [_pg_share(row) for row in rows]

    async def get(self, share_id: str) -> Share | None:
        """The link with this id, expired or not, if it was not revoked."""
        rows = await self._fetch(f"SELECT {SHARE_COLUMNS} FROM shares WHERE id = $1", share_id)
        return _pg_share(rows[0]) if rows else None

    async def revoke(self, share_id: str) -> None:
        """Remove the link and revoke its token, in one transaction."""

        async def work(conn: Any) -> None:
            await conn.execute("DELETE FROM shares WHERE id = $1", share_id)
            await conn.execute(
                "INSERT INTO revoked_tokens (jti, revoked_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
                share_id,
                time.time(),
            )

        await self._submit(work, _same)


def revoke_agent_shares(db: sqlite3.Connection, agent_pk: int) -> None:
    """In SQLite's writer, as the agent is deleted: revoke its links' tokens, so an agent made later with its id and
    owner is not theirs to read."""
    db.execute(
        "INSERT OR IGNORE INTO revoked_tokens (jti, revoked_at) SELECT id, ? FROM shares WHERE agent_pk = ?",
        (time.time(), agent_pk),
    )
    db.execute("DELETE FROM shares WHERE agent_pk = ?", (agent_pk,))


async def revoke_agent_shares_pg(conn: Any, agent_pk: int) -> None:
    """On PostgreSQL's writer connection, as the agent is deleted: revoke its links' tokens (see above)."""
    await conn.execute(
        "INSERT INTO revoked_tokens (jti, revoked_at) SELECT id, $2 FROM shares WHERE agent_pk = $1 "
        "ON CONFLICT (jti) DO NOTHING",
        agent_pk,
        time.time(),
    )
    await conn.execute("DELETE FROM shares WHERE agent_pk = $1", agent_pk)


def _values(share: Share) -> tuple[Any, ...]:
    return (share.id, share.agent_pk, share.agent_id, share.created_by, share.created_at, share.expires_at)


def _pg_share(row: Any) -> Share:
    share_id, agent_pk, agent_id, created_by, created_at, expires_at = row
    return Share(share_id, agent_pk, from_pg(agent_id), from_pg(created_by), created_at, expires_at)


def _same(value: Any) -> Any:
    return value
