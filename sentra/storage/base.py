"""The storage interface every backend implements (SQLite by default, PostgreSQL for several processes), and the
query type they share; storage/open.py picks a backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sentra.attachments import AttachmentStore
from sentra.lines import Line, NewLine
from sentra.models import Agent, AppendResult, CommitListener
from sentra.storage.appends import AppendJob
from sentra.storage.shares import ShareStore
from sentra.storage.words import Terms, parse_query
from sentra.webhooks.records import Attempt, Message, Webhook


@dataclass
class LineQuery:
    """Filters of a history read or a stream: minimum level, and `q` as sentra.storage.words reads it (every term in
    the message or a field value; BadRequest for a q with text but no word)."""

    min_level: int = 0
    q: str = ""
    terms: Terms = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.terms = parse_query(self.q)

    @property
    def is_empty(self) -> bool:
        """True when the query lets every line through."""
        return not self.min_level and not self.terms

    def matches(self, line: Line) -> bool:
        """The test every read applies, for lines that arrive live."""
        if line.levelno < self.min_level:
            return False
        return not self.terms or self.terms.matches(line.message, line.fields)


@dataclass(frozen=True)
class SearchQuery:
    """A search across agents: `terms` (not empty), and which lines: minimum level, owner (None: every owner), agent
    pks (None: every agent), labels every agent must carry, and a time range (ts, inclusive)."""

    terms: Terms
    min_level: int = 0
    owner: str | None = None
    agent_pks: tuple[int, ...] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None


class WebhookStore(Protocol):
    """Webhooks, their outbox and delivery log (storage/sqlite_webhooks.py, storage/postgres_webhooks.py). Events
    enter the outbox inside the transactions that cause them; the worker claims, delivers and records them."""

    async def reload_hooks(self, window: float | None = None) -> None:
        """Read the lines.matched webhooks again (another process may have changed them); set the debounce window."""

    async def create(self, hook: Webhook) -> None:
        """Register a webhook."""

    async def get(self, hook_id: str) -> Webhook | None:
        """The webhook with this id, if any."""

    async def hooks_of(self, owner: str | None) -> list[Webhook]:
        """The webhooks of `owner` (None: everyone's), oldest first."""

    async def update(self, hook: Webhook) -> None:
        """Store a webhook's changed settings (url, events, format, label, min_level, contains)."""

    async def delete(self, hook_id: str) -> None:
        """Remove a webhook with its pending messages, windows and delivery log."""

    async def queue_test(self, hook: Webhook) -> str:
        """Put a webhook.test event for `hook` into the outbox; its webhook-id."""

    async def claim(self, limit: int, lease: float, claimer: str) -> list[Message]:
        """Up to `limit` due messages, claimed by `claimer` for `lease` seconds (others skip them meanwhile)."""

    async def release_claims(self) -> None:
        """At start: release the claims a process that died may have left (where they cannot be another's)."""

    async def record(self, message: Message, attempt: Attempt, next_due: float | None, claimer: str) -> None:
        """Log an attempt; remove the message once delivered or given up (next_due None), else reschedule it."""

    async def deliveries(self, hook_id: str, limit: int) -> list[Attempt]:
        """The webhook's last attempts, newest first."""

    async def outbox_size(self) -> int:
        """Messages waiting in the outbox (due or scheduled for a retry)."""


class Storage(Protocol):
    """Agents, lines, idempotency keys and revoked tokens; tells `listener` of every commit, in order."""

    listener: CommitListener | None
    on_commit: Callable[[int, float], None] | None

    @property
    def webhooks(self) -> WebhookStore:
        """Webhooks, their outbox and delivery log."""

    @property
    def attachments(self) -> AttachmentStore:
        """Stored attachments (written with their lines by the group commit)."""

    @property
    def shares(self) -> ShareStore:
        """The agents' share links."""

    @property
    def description(self) -> str:
        """Where the data lives, for the start-up banner (never a password)."""

    async def open(self) -> None:
        """Connect, create the schema if missing and start writing."""

    async def close(self) -> None:
        """Write everything queued, then disconnect."""

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write has committed (or failed) and been answered."""

    async def check(self) -> None:
        """Raise if the storage cannot be read (for /healthz)."""

    async def get_agent(self, agent_id: str) -> Agent | None:
        """The agent as committed; shared storage reads it afresh, so no other process's commit is missed."""

    def cached_agent(self, agent_id: str) -> Agent | None:
        """The newest agent record this process knows of, without I/O, if it has one."""

    def observe_agent(self, agent: Agent) -> Agent:
        """Another process committed this agent record: keep it if newer than the cached one; the newest."""

    def forget_agent(self, agent: Agent) -> None:
        """Another process deleted this agent: drop it from the cache unless a newer one took its id."""

    async def list_agents(
        self,
        owner: str | None,
        *,
        status: str | None = None,
        labels: dict[str, str] | None = None,
        limit: int = 100,
        before_pk: int | None = None,
    ) -> list[Agent]:
        """Agents newest first, filtered by owner (None: all), status and labels."""

    async def lines_after(
        self,
        agent: Agent,
        after: int,
        *,
        upto: int | None = None,
        limit: int = 1000,
        query: LineQuery | None = None,
    ) -> list[Line]:
        """Up to `limit` lines with seq > after (and <= upto), ascending, matching `query`."""

    async def lines_before(
        self, agent: Agent, before: int, *, limit: int = 1000, query: LineQuery | None = None
    ) -> list[Line]:
        """The `limit` lines just before seq `before`, ascending, matching `query`."""

    async def search_lines(self, query: SearchQuery, *, before: int | None, limit: int) -> list[tuple[int, Line]]:
        """Up to `limit` lines matching `query` across agents, newest first, each with its id in the word index
        (the next page asks for ids below the last); ServiceUnavailable when search.index is off."""

    async def revoked_since(self, after_rowid: int) -> list[tuple[int, str]]:
        """Revoked token ids recorded after `after_rowid`, as (rowid, jti)."""

    async def volume(self, agent: Agent, buckets: int, since: float | None, until: float | None) -> dict[str, Any]:
        """The agent's lines per level in `buckets` equal buckets of since..until (default: its stored lines' span),
        as GET /api/agents/{id}/volume answers, from the volume index (sentra/volume.py)."""

    async def append_lines(
        self,
        agent_id: str,
        subject: str,
        lines: Iterable[NewLine],
        *,
        may_write_any: bool = False,
        idempotency_key: str | None = None,
        name: str = "",
        labels: dict[str, str] | None = None,
    ) -> AppendResult:
        """Assign gap-free seqs and commit `lines`, creating the agent on first ingest; returns once durable."""

    def queue_append(self, job: AppendJob) -> asyncio.Future[AppendResult]:
        """append_lines without a coroutine: the future is done once the job's lines are durable (or refused)."""

    async def create_agent(self, agent_id: str, owner: str, name: str, labels: dict[str, str]) -> Agent:
        """Create a running agent; Conflict if the id is taken."""

    async def update_agent(
        self,
        agent_id: str,
        *,
        status: str | None,
        name: str | None,
        labels: dict[str, str] | None,
        reason: str | None,
    ) -> Agent:
        """Change status, name, labels; a finished agent stays finished (Conflict)."""

    async def request_stop(self, agent_id: str, by: str) -> Agent:
        """Record that `by` asked the running agent to stop (the first request stays); Conflict once finished."""

    async def delete_agent(self, agent_id: str) -> None:
        """Remove the agent, its lines and its idempotency keys."""

    async def fail_idle_agents(self, idle_for: float) -> list[str]:
        """Mark running agents with no line for `idle_for` seconds as failed (reason timeout)."""

    async def enforce_retention(self, max_lines: int, max_age: float, idempotency_ttl: float) -> int:
        """Trim each agent to its newest `max_lines`, delete finished agents older than `max_age`."""
