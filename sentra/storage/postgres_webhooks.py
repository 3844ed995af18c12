"""Webhooks in PostgreSQL: the same tables and rules as storage/sqlite_webhooks.py, for several processes. A message
is claimed with FOR UPDATE SKIP LOCKED, so each is delivered by one process; the writes that cause events run on
the store's writer connection, inside the transactions that cause them."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from sentra.lines import Line
from sentra.models import Agent
from sentra.storage.postgres_schema import from_pg, line_from_row, to_pg
from sentra.storage.sqlite_webhooks import ATTEMPT_COLUMNS, DELIVERIES_KEPT, HOOK_COLUMNS
from sentra.webhooks.events import LINES_CARRIED, LineHooks, matched_payload, merge_matches, payload, status_event
from sentra.webhooks.events import test_payload as make_test_payload
from sentra.webhooks.records import LINES_MATCHED, Attempt, Message, Webhook
from sentra.webhooks.signing import new_message_id

Work = Callable[[Any], Awaitable[Any]]

WEBHOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    all_agents BOOLEAN NOT NULL DEFAULT FALSE,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    format TEXT NOT NULL DEFAULT 'standard',
    label TEXT,
    min_level INTEGER NOT NULL DEFAULT 0,
    contains_text TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    failing_since DOUBLE PRECISION,
    last_delivery_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS webhooks_by_owner ON webhooks (owner);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (due_at);
CREATE INDEX IF NOT EXISTS webhook_outbox_by_hook ON webhook_outbox (webhook_id);
CREATE TABLE IF NOT EXISTS webhook_windows (
    webhook_id TEXT NOT NULL,
    agent_pk BIGINT NOT NULL,
    next_free DOUBLE PRECISION NOT NULL,
    pending_id TEXT,
    PRIMARY KEY (webhook_id, agent_pk)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    pk BIGSERIAL PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    result TEXT NOT NULL,
    status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, pk);
"""


def hook_from_row(row: Any) -> Webhook:
    """A Webhook from a row of HOOK_COLUMNS."""
    hook_id, owner, all_agents, url, events, secret, fmt, label, level, contains, created, updated, failing, last = row
    return Webhook(
        hook_id, from_pg(owner), bool(all_agents), from_pg(url), json.loads(events), secret, fmt,
        None if label is None else from_pg(label), level, None if contains is None else from_pg(contains),
        created, updated, failing, last,
    )  # fmt: skip


def hook_values(hook: Webhook) -> tuple[Any, ...]:
    """The values of HOOK_COLUMNS for `hook`."""
    return (
        hook.id, to_pg(hook.owner), hook.all_agents, to_pg(hook.url), hook.events_json(), hook.secret, hook.format,
        None if hook.label is None else to_pg(hook.label), hook.min_level,
        None if hook.contains is None else to_pg(hook.contains), hook.created_at, hook.updated_at,
        hook.failing_since, hook.last_delivery_at,
    )  # fmt: skip


async def insert_message(conn: Any, hook_id: str, event: dict[str, Any], now: float, due: float) -> str:
    """Put an event for one webhook into the outbox; its webhook-id."""
    message_id = new_message_id()
    await conn.execute(
        "INSERT INTO webhook_outbox (id, webhook_id, event, payload, created_at, due_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        message_id, hook_id, event["type"], json.dumps(event), now, due,
    )  # fmt: skip
    return message_id


async def queue_agent_event(conn: Any, before: Agent, after: Agent) -> None:
    """In the transaction that finishes an agent: agent.failed or agent.completed for every webhook it triggers,
    with the agent's last lines."""
    event = status_event(before, after)
    if event is None:
        return
    rows = await conn.fetch(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE owner = $1 OR all_agents", to_pg(after.owner))
    hooks = [hook for hook in map(hook_from_row, rows) if event in hook.events and hook.applies_to(after)]
    if not hooks:
        return
    found = await conn.fetch(
        "SELECT seq, ts, level, source, message, fields FROM lines WHERE agent_pk = $1 ORDER BY seq DESC LIMIT $2",
        after.pk,
        LINES_CARRIED,
    )
    lines = [line_from_row(after.id, row) for row in reversed(found)]
    now = after.updated_at
    for hook in hooks:
        await insert_message(conn, hook.id, payload(event, after, lines, now), now, now)


async def queue_line_matches(
    conn: Any, hooks: LineHooks, staged: dict[str, Agent], written: Iterable[tuple[str, Sequence[Line]]]
) -> None:
    """In a group commit: lines.matched for the webhooks its lines trigger, at most one delivery per agent and
    webhook per window (the agents are locked, so one process at a time decides for an agent)."""
    matches = hooks.matches_of_batch(staged, written)
    if not matches:
        return
    now = time.time()
    for hook, agent, lines in matches:
        window = await conn.fetchrow(
            "SELECT next_free, pending_id FROM webhook_windows WHERE webhook_id = $1 AND agent_pk = $2",
            hook.id,
            agent.pk,
        )
        if window is not None and window[1] is not None:
            pending = await conn.fetchrow(
                "SELECT payload FROM webhook_outbox WHERE id = $1 AND attempts = 0 AND claimed_until <= $2 FOR UPDATE",
                window[1],
                now,
            )
            if pending is not None:
                merged = merge_matches(json.loads(pending[0]), agent, lines, now)
                await conn.execute(
                    "UPDATE webhook_outbox SET payload = $1 WHERE id = $2", json.dumps(merged), window[1]
                )
                continue
        due = max(now, window[0] if window is not None else now)
        message_id = await insert_message(conn, hook.id, matched_payload(agent, lines, now), now, due)
        await conn.execute(
            "INSERT INTO webhook_windows (webhook_id, agent_pk, next_free, pending_id) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (webhook_id, agent_pk) DO UPDATE SET next_free = excluded.next_free, "
            "pending_id = excluded.pending_id",
            hook.id, agent.pk, due + hooks.window, message_id,
        )  # fmt: skip


class PostgresWebhooks:
    """storage.base.WebhookStore on the PostgreSQL store: reads from its pool, writes through its write queue."""

    def __init__(
        self, fetch: Callable[..., Awaitable[list[Any]]], submit: Callable[[Work, Callable[[Any], Any]], Awaitable[Any]]
    ) -> None:
        self._fetch = fetch
        self._submit = submit
        self.line_hooks = LineHooks()

    async def _write(self, work: Work) -> Any:
        return await self._submit(work, _same)

    async def reload_hooks(self, window: float | None = None) -> None:
        """Read the lines.matched webhooks again (another process may have changed them); set the debounce window."""
        rows = await self._fetch(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE events LIKE $1", f'%"{LINES_MATCHED}"%')
        self.line_hooks = LineHooks.of(map(hook_from_row, rows), self.line_hooks.window if window is None else window)

    async def create(self, hook: Webhook) -> None:
        """Register a webhook."""
        marks = ", ".join(f"${n}" for n in range(1, 15))
        sql = f"INSERT INTO webhooks ({HOOK_COLUMNS}) VALUES ({marks})"
        await self._write(lambda conn: conn.execute(sql, *hook_values(hook)))
        await self.reload_hooks()

    async def get(self, hook_id: str) -> Webhook | None:
        """The webhook with this id, if any."""
        rows = await self._fetch(f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = $1", hook_id)
        return hook_from_row(rows[0]) if rows else None

    async def hooks_of(self, owner: str | None) -> list[Webhook]:
        """The webhooks of `owner` (None: everyone's), oldest first."""
        if owner is None:
            rows = await self._fetch(f"SELECT {HOOK_COLUMNS} FROM webhooks ORDER BY created_at, id")
        else:
            rows = await self._fetch(
                f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE owner = $1 ORDER BY created_at, id", to_pg(owner)
            )
        return [hook_from_row(row) for row in rows]

    async def update(self, hook: Webhook) -> None:
        """Store a webhook's changed settings (url, events, format, label, min_level, contains)."""
        values = hook_values(hook)
        sql = (
            "UPDATE webhooks SET url = $2, events = $3, format = $4, label = $5, min_level = $6, contains_text = $7, "
            "updated_at = $8 WHERE id = $1"
        )
        args = (hook.id, values[3], values[4], values[6], values[7], values[8], values[9], hook.updated_at)
        await self._write(lambda conn: conn.execute(sql, *args))
        await self.reload_hooks()

    async def delete(self, hook_id: str) -> None:
        """Remove a webhook with its pending messages, windows and delivery log."""

        async def work(conn: Any) -> None:
            for table in ("webhook_outbox", "webhook_windows", "webhook_deliveries"):
                await conn.execute(f"DELETE FROM {table} WHERE webhook_id = $1", hook_id)
            await conn.execute("DELETE FROM webhooks WHERE id = $1", hook_id)

        await self._write(work)
        await self.reload_hooks()

    async def queue_test(self, hook: Webhook) -> str:
        """Put a webhook.test event for `hook` into the outbox; its webhook-id."""
        now = time.time()
        message_id: str = await self._write(
            lambda conn: insert_message(conn, hook.id, make_test_payload(hook, now), now, now)
        )
        return message_id

    async def claim(self, limit: int, lease: float, claimer: str) -> list[Message]:
        """Up to `limit` due messages, claimed by `claimer` for `lease` seconds; rows another process is claiming
        are skipped, so each message goes to one process."""
        now = time.time()
        due = "due_at <= $1 AND claimed_until <= $1"
        if not await self._fetch(f"SELECT 1 FROM webhook_outbox WHERE {due} LIMIT 1", now):
            return []

        async def work(conn: Any) -> list[Message]:
            rows = await conn.fetch(
                "UPDATE webhook_outbox o SET claimed_until = $2, claimed_by = $3 FROM (SELECT id FROM webhook_outbox "
                f"WHERE {due} ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) d WHERE o.id = d.id "
                "RETURNING o.id, o.webhook_id, o.event, o.payload, o.created_at, o.attempts, o.due_at",
                now, now + lease, claimer, limit,
            )  # fmt: skip
            if not rows:
                return []
            found = await conn.fetch(
                f"SELECT {HOOK_COLUMNS} FROM webhooks WHERE id = ANY($1::text[])", sorted({row[1] for row in rows})
            )
            hooks = {hook.id: hook for hook in map(hook_from_row, found)}
            ordered = sorted(rows, key=lambda row: row[6])
            return [
                Message(row[0], row[2], json.loads(row[3]), row[4], row[5], hooks[row[1]])
                for row in ordered
                if row[1] in hooks
            ]

        claimed: list[Message] = await self._write(work)
        return claimed

    async def release_claims(self) -> None:
        """Nothing to release: other processes may hold live claims; a dead one's end with their lease."""

    async def record(self, message: Message, attempt: Attempt, next_due: float | None, claimer: str) -> None:
        """Log an attempt; remove the message once delivered or given up, else schedule its next attempt."""
        hook_id = message.hook.id

        async def work(conn: Any) -> None:
            await conn.execute(
                f"INSERT INTO webhook_deliveries (webhook_id, {ATTEMPT_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                hook_id, attempt.message_id, attempt.event, attempt.attempt, attempt.at, attempt.result,
                attempt.status, None if attempt.error is None else to_pg(attempt.error),
            )  # fmt: skip
            await conn.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND pk <= (SELECT pk FROM webhook_deliveries "
                "WHERE webhook_id = $1 ORDER BY pk DESC LIMIT 1 OFFSET $2)",
                hook_id,
                DELIVERIES_KEPT,
            )
            if next_due is None:
                await conn.execute("DELETE FROM webhook_outbox WHERE id = $1", message.id)
            else:
                await conn.execute(
                    "UPDATE webhook_outbox SET attempts = $1, due_at = $2, claimed_until = 0, claimed_by = NULL "
                    "WHERE id = $3 AND claimed_by = $4",
                    attempt.attempt, next_due, message.id, claimer,
                )  # fmt: skip
            if attempt.result == "delivered":
                await conn.execute(
                    "UPDATE webhooks SET failing_since = NULL, last_delivery_at = $1 WHERE id = $2", attempt.at, hook_id
                )
            else:
                await conn.execute(
                    "UPDATE webhooks SET failing_since = coalesce(failing_since, $1) WHERE id = $2", attempt.at, hook_id
                )

        await self._write(work)

    async def deliveries(self, hook_id: str, limit: int) -> list[Attempt]:
        """The webhook's last attempts, newest first."""
        rows = await self._fetch(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY pk DESC LIMIT $2",
            hook_id,
            limit,
        )
        return [
            Attempt(row[0], row[1], row[2], row[3], row[4], row[5], None if row[6] is None else from_pg(row[6]))
            for row in rows
        ]

    async def outbox_size(self) -> int:
        """Messages waiting in the outbox (due or scheduled for a retry)."""
        rows = await self._fetch("SELECT count(*) FROM webhook_outbox")
        return int(rows[0][0])


def _same(outcome: Any) -> Any:
    return outcome
