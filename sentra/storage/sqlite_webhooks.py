"""Webhooks in SQLite: the webhooks, their outbox, debounce windows and delivery log, and the writes storage makes
inside the transactions that cause events (an agent's status change, a group commit with matching lines)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import aiosqlite

from sentra.lines import Line
from sentra.models import Agent
from sentra.storage.sqlite_schema import line_from_row
from sentra.webhooks.events import LINES_CARRIED, LineHooks, matched_payload, merge_matches, payload, status_event
from sentra.webhooks.events import test_payload as make_test_payload
from sentra.webhooks.records import LINES_MATCHED, Attempt, Message, Webhook
from sentra.webhooks.signing import new_message_id

T = TypeVar("T")
DELIVERIES_KEPT = 100  # attempts listed per webhook; older ones are removed as new ones are recorded

WEBHOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    all_agents INTEGER NOT NULL DEFAULT 0,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    format TEXT NOT NULL DEFAULT 'standard',
    label TEXT,
    min_level INTEGER NOT NULL DEFAULT 0,
    contains_text TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    failing_since REAL,
    last_delivery_at REAL
);
CREATE INDEX IF NOT EXISTS webhooks_by_owner ON webhooks (owner);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL NOT NULL DEFAULT 0,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (due_at);
CREATE INDEX IF NOT EXISTS webhook_outbox_by_hook ON webhook_outbox (webhook_id);
CREATE TABLE IF NOT EXISTS webhook_windows (
    webhook_id TEXT NOT NULL,
    agent_pk INTEGER NOT NULL,
    next_free REAL NOT NULL,
    pending_id TEXT,
    PRIMARY KEY (webhook_id, agent_pk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    pk INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    result TEXT NOT NULL,
    status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, pk);
"""

HOOK_COLUMNS = (
    "id, owner, all_agents, url, events, secret, format, label, min_level, contains_text, created_at, updated_at, "
    "failing_since, last_delivery_at"
)
ATTEMPT_COLUMNS = "message_id, event, attempt, at, result, status, error"


def hook_from_row(row: Iterable[Any]) -> Webhook:
    """A Webhook from a row of HOOK_COLUMNS."""
    hook_id, owner, all_agents, url, events, secret, fmt, label, level, contains, created, updated, failing, last = row
    return Webhook(
        hook_id, owner, bool(all_agents), url, json.loads(events), secret, fmt, label, level, contains,
        created, updated, failing, last,
    )  # fmt: skip


def hook_values(hook: Webhook) -> tuple[Any, ...]:
    """The values of HOOK_COLUMNS for `hook`."""
    return (
        hook.id, hook.owner, hook.all_agents, hook.url, hook.events_json(), hook.secret, hook.format, hook.label,
        hook.min_level, hook.contains, hook.created_at, hook.updated_at, hook.failing_since, hook.last_delivery_at,
    )  # fmt: skip


# ---- writes inside the transactions that cause events (the writer thread, or the event loop for small commits) ----


def insert_message(db: sqlite3.Connection, hook_id: str, event: dict[str, Any], now: float, due: float) -> str:
    """Put an event for one webhook into the outbox; its webhook-id."""
    message_id = new_message_id()
    db.execute(
        "INSERT INTO webhook_outbox (id, webhook_id, event, payload, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?)",
        (message_id, hook_id, event["type"], json.dumps(event), now, due),
    )
    return message_id


def queue_agent_event(db: sqlite3.Connection, before: Agent, after: Agent) -> None:
    """In the transaction that finishes an agent: agent.failed or agent.completed for every webhook it triggers,
    with the agent's last lines."""
    event = status_event(before, after)
    if event is None:
        return
    rows = db.execute(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE owner = ? OR all_agents = 1", (after.owner,))
    hooks = [hook for hook in map(hook_from_row, rows.fetchall()) if event in hook.events and hook.applies_to(after)]
    if not hooks:
        return
    found = db.execute(
        "SELECT seq, ts, level, source, message, fields FROM lines WHERE agent_pk = ? ORDER BY seq DESC LIMIT ?",
        (after.pk, LINES_CARRIED),
    ).fetchall()
    lines = [line_from_row(after.id, tuple(row)) for row in reversed(found)]
    now = after.updated_at
    for hook in hooks:
        insert_message(db, hook.id, payload(event, after, lines, now), now, now)


def queue_line_matches(
    db: sqlite3.Connection, hooks: LineHooks, staged: dict[str, Agent], written: Iterable[tuple[str, Sequence[Line]]]
) -> None:
    """In a group commit: lines.matched for the webhooks its lines trigger, at most one delivery per agent and
    webhook per window (later matches join the message waiting for the window's end)."""
    matches = hooks.matches_of_batch(staged, written)
    if not matches:
        return
    now = time.time()
    for hook, agent, lines in matches:
        window = db.execute(
            "SELECT next_free, pending_id FROM webhook_windows WHERE webhook_id = ? AND agent_pk = ?",
            (hook.id, agent.pk),
        ).fetchone()
        if window is not None and window[1] is not None:
            pending = db.execute(
                "SELECT payload FROM webhook_outbox WHERE id = ? AND attempts = 0 AND claimed_until <= ?",
                (window[1], now),
            ).fetchone()
            if pending is not None:
                merged = merge_matches(json.loads(pending[0]), agent, lines, now)
                db.execute("UPDATE webhook_outbox SET payload = ? WHERE id = ?", (json.dumps(merged), window[1]))
                continue
        due = max(now, window[0] if window is not None else now)
        message_id = insert_message(db, hook.id, matched_payload(agent, lines, now), now, due)
        db.execute(
            "INSERT OR REPLACE INTO webhook_windows (webhook_id, agent_pk, next_free, pending_id) VALUES (?, ?, ?, ?)",
            (hook.id, agent.pk, due + hooks.window, message_id),
        )


# ---- the webhook store ------------------------------------------------------------------------------------


class WebhookWriter(Protocol):
    """What SqliteWebhooks needs of the store's writer: its connection and the lines.matched webhooks it holds."""

    line_hooks: LineHooks

    @property
    def db(self) -> sqlite3.Connection:
        """The open write connection."""


class SqliteWebhooks:
    """storage.base.WebhookStore on the SQLite store: reads on its read connection, writes through its write queue
    (one transaction each, in order with the group commits)."""

    def __init__(
        self,
        writer: WebhookWriter,
        reader: Callable[[], aiosqlite.Connection],
        submit: Callable[[Callable[[], Any], Callable[[Any], Any]], Awaitable[Any]],
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._submit = submit
        self._window = writer.line_hooks.window

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._submit(lambda: work(self._writer.db), _same)
        return result

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._reader().execute_fetchall(sql, params)]

    async def reload_hooks(self, window: float | None = None) -> None:
        """Read the lines.matched webhooks again (and set the debounce window)."""
        if window is not None:
            self._window = window
        rows = await self._rows(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE events LIKE ?", (f'%"{LINES_MATCHED}"%',))
        self._writer.line_hooks = LineHooks.of(map(hook_from_row, rows), self._window)

    async def create(self, hook: Webhook) -> None:
        """Register a webhook."""
        marks = ", ".join("?" * len(hook_values(hook)))
        sql = f"INSERT INTO webhooks ({HOOK_COLUMNS}) VALUES ({marks})"
        await self._write(lambda db: db.execute(sql, hook_values(hook)))
        await self.reload_hooks()

    async def get(self, hook_id: str) -> Webhook | None:
        """The webhook with this id, if any."""
        rows = await self._rows(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ?", (hook_id,))
        return hook_from_row(rows[0]) if rows else None

    async def hooks_of(self, owner: str | None) -> list[Webhook]:
        """The webhooks of `owner` (None: everyone's), oldest first."""
        if owner is None:
            rows = await self._rows(f"SELECT {HOOK_COLUMNS} FROM webhooks ORDER BY created_at, id")
        else:
            rows = await self._rows(
                f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE owner = ? ORDER BY created_at, id", (owner,)
            )
        return [hook_from_row(row) for row in rows]

    async def update(self, hook: Webhook) -> None:
        """Store a webhook's changed settings (url, events, format, label, min_level, contains)."""
        sql = (
            "UPDATE webhooks SET url = ?, events = ?, format = ?, label = ?, min_level = ?, contains_text = ?, "
            "updated_at = ? WHERE id = ?"
        )
        values = (
            hook.url, hook.events_json(), hook.format, hook.label, hook.min_level, hook.contains, hook.updated_at,
            hook.id,
        )  # fmt: skip
        await self._write(lambda db: db.execute(sql, values))
        await self.reload_hooks()

    async def delete(self, hook_id: str) -> None:
        """Remove a webhook with its pending messages, windows and delivery log."""

        def work(db: sqlite3.Connection) -> None:
            for table in ("webhook_outbox", "webhook_windows", "webhook_deliveries"):
                db.execute(f"DELETE FROM {table} WHERE webhook_id = ?", (hook_id,))
            db.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,))

        await self._write(work)
        await self.reload_hooks()

    async def queue_test(self, hook: Webhook) -> str:
        """Put a webhook.test event for `hook` into the outbox; its webhook-id."""
        now = time.time()
        return await self._write(lambda db: insert_message(db, hook.id, make_test_payload(hook, now), now, now))

    async def claim(self, limit: int, lease: float, claimer: str) -> list[Message]:
        """Up to `limit` due messages, claimed by `claimer` for `lease` seconds (others skip them meanwhile)."""
        now = time.time()
        due = "due_at <= ? AND claimed_until <= ?"
        if not await self._rows(f"SELECT 1 FROM webhook_outbox WHERE {due} LIMIT 1", (now, now)):
            return []

        def work(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                f"SELECT id, webhook_id, event, payload, created_at, attempts FROM webhook_outbox WHERE {due} "
                "ORDER BY due_at LIMIT ?",
                (now, now, limit),
            ).fetchall()
            ids = [row[0] for row in rows]
            marks = ", ".join("?" * len(ids))
            db.execute(
                f"UPDATE webhook_outbox SET claimed_until = ?, claimed_by = ? WHERE id IN ({marks})",
                (now + lease, claimer, *ids),
            )
            hook_ids = sorted({row[1] for row in rows})
            found = db.execute(
                f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id IN ({', '.join('?' * len(hook_ids))})", hook_ids
            ).fetchall()
            hooks = {hook.id: hook for hook in map(hook_from_row, found)}
            return [
                Message(row[0], row[2], json.loads(row[3]), row[4], row[5], hooks[row[1]])
                for row in rows
                if row[1] in hooks
            ]

        return await self._write(work)

    async def release_claims(self) -> None:
        """Release every claim: one process owns a SQLite file, so claims held at start died with the last one."""
        await self._write(
            lambda db: db.execute(
                "UPDATE webhook_outbox SET claimed_until = 0, claimed_by = NULL WHERE claimed_by IS NOT NULL"
            )
        )

    async def record(self, message: Message, attempt: Attempt, next_due: float | None, claimer: str) -> None:
        """Log an attempt; remove the message once delivered or given up, else schedule its next attempt."""
        hook_id = message.hook.id

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO webhook_deliveries (webhook_id, {ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (hook_id, attempt.message_id, attempt.event, attempt.attempt, attempt.at, attempt.result,
                 attempt.status, attempt.error),
            )  # fmt: skip
            db.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ? AND pk <= (SELECT pk FROM webhook_deliveries "
                "WHERE webhook_id = ? ORDER BY pk DESC LIMIT 1 OFFSET ?)",
                (hook_id, hook_id, DELIVERIES_KEPT),
            )
            if next_due is None:
                db.execute("DELETE FROM webhook_outbox WHERE id = ?", (message.id,))
            else:
                db.execute(
                    "UPDATE webhook_outbox SET attempts = ?, due_at = ?, claimed_until = 0, claimed_by = NULL "
                    "WHERE id = ? AND claimed_by = ?",
                    (attempt.attempt, next_due, message.id, claimer),
                )
            if attempt.result == "delivered":
                db.execute(
                    "UPDATE webhooks SET failing_since = NULL, last_delivery_at = ? WHERE id = ?", (attempt.at, hook_id)
                )
            else:
                db.execute(
                    "UPDATE webhooks SET failing_since = coalesce(failing_since, ?) WHERE id = ?", (attempt.at, hook_id)
                )

        await self._write(work)

    async def deliveries(self, hook_id: str, limit: int) -> list[Attempt]:
        """The webhook's last attempts, newest first."""
        rows = await self._rows(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? ORDER BY pk DESC LIMIT ?",
            (hook_id, limit),
        )
        return [Attempt(*row) for row in rows]

    async def outbox_size(self) -> int:
        """Messages waiting in the outbox (due or scheduled for a retry)."""
        rows = await self._rows("SELECT count(*) FROM webhook_outbox")
        return int(rows[0][0])


def _same(outcome: Any) -> Any:
    return outcome
