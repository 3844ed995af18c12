"""The word index's writer, apart from any database: what an index entry holds, the order lines enter the index, and
the task that keeps the index up with the lines (storage/sqlite_search.py and postgres_search.py do the SQL).

Every line gets an id in the index, which orders search results (newest first) and pages them. Lines committed
while the index runs get ids counting up from LIVE_BASE; lines stored before the index existed are added in the
background, newest first, with ids counting down from it, so search results stay newest first while the index is
built. Within each batch lines are ordered by time across agents; within an agent ids follow seqs.

The index is written in transactions of its own, never in the group commit: ingest and live streams never wait for
it, and a line becomes searchable within about a second of its commit (INDEX_INTERVAL, plus the batch's time).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import time
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from sentra.lines import LEVELS
from sentra.storage.base import SearchQuery
from sentra.storage.words import index_words

log = logging.getLogger("sentra.search")
LIVE_BASE = 1 << 40
# How often the index looks for new lines, and the most lines it writes in one transaction.
INDEX_INTERVAL = 0.5
BATCH_LINES = 5000
# At least this many lines of an agent are read at once, so a batch over many agents still reads in runs.
AGENT_RUN = 64
# Progress of a background build is logged this often.
PROGRESS_EVERY = 10.0
# After a failed pass (the database is busy or gone), the next one waits this long.
RETRY_AFTER = 5.0
# Commits arriving within this long of the first one go into the same pass (a transaction of the index each).
GATHER = 0.05
# A search waits at most this long for lines its own process committed to be in the index.
SEARCH_WAIT = 1.0
# A pass takes at most this many batches of new lines before it looks at removals and the build.
LIVE_BATCHES = 8


class Row(NamedTuple):
    """A stored line as the index reads it."""

    agent_pk: int
    seq: int
    ts: float
    level: int
    message: str
    fields: str | None


class Entry(NamedTuple):
    """A line as the index holds it: its id, where it is stored, and its words and tags."""

    id: int
    agent_pk: int
    seq: int
    words: str


def agent_tag(pk: int) -> str:
    """The index word every line of agent `pk` carries (no word of a line has an underscore)."""
    return f"_a{pk}"


def owner_tag(owner: str) -> str:
    """The index word every line of `owner`'s agents carries."""
    return "_u" + hashlib.sha1(owner.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def level_tags(min_level: int) -> list[str]:
    """The index words of the levels at or above `min_level` (none when every level is)."""
    if min_level <= min(LEVELS.values()):
        return []
    return [f"_l{number}" for number in LEVELS.values() if number >= min_level]


def entry_words(row: Row, owner: str) -> str:
    """The words and tags the index holds for `row` of an agent of `owner`."""
    fields = json.loads(row.fields) if row.fields else {}
    return f"{index_words(row.message, fields)} {agent_tag(row.agent_pk)} _l{row.level} {owner_tag(owner)}"


def plan_entries(
    rows_by_agent: Iterable[list[Row]], owners: dict[int, str], start: int, *, descending: bool
) -> list[Entry]:
    """Entries for rows read per agent (each list in seq order, descending if `descending`), merged by time across
    agents, with ids from `start` counting up (down if `descending`)."""
    merged = heapq.merge(*rows_by_agent, key=lambda row: row.ts, reverse=descending)
    step = -1 if descending else 1
    return [
        Entry(start + step * offset, row.agent_pk, row.seq, entry_words(row, owners[row.agent_pk]))
        for offset, row in enumerate(merged)
    ]


class IndexTarget(Protocol):
    """What the writer asks of a backend; each batch is one transaction of the index."""

    async def live_batch(self, dirty: set[int] | None, max_lines: int) -> tuple[int, bool]:
        """Index new lines of the agents in `dirty` (None: of any agent): (lines indexed, more left)."""

    async def backfill_batch(self, max_lines: int) -> int:
        """Index lines stored before the index existed, newest first; how many (0: none left)."""

    async def purge_batch(self, max_lines: int) -> int:
        """Remove entries of deleted agents and trimmed lines; how many (0: none left)."""

    async def backlog(self) -> int:
        """Lines stored before the index existed and not yet in it."""


class IndexWriter:
    """The task that keeps an index up with the lines: new lines first, then removals, then the background build
    in bounded batches, with its progress in the log."""

    def __init__(self, target: IndexTarget, *, sees_every_commit: bool) -> None:
        self.target = target
        # A single process sees every commit and every delete, so it only looks at agents it was told of; with
        # shared storage other processes commit too, and every pass looks at every agent.
        self._sees_every_commit = sees_every_commit
        self._dirty: set[int] | None = None
        self._purge_due = True
        self._wake = asyncio.Event()
        # Commits this process was told of, and how many of them the index holds every line of.
        self._committed = 0
        self._indexed = 0
        self._urgent = False
        self._pass_done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._build_total = 0
        self._build_started = 0.0
        self._build_logged = 0.0

    def start(self) -> None:
        """Begin indexing."""
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Finish the batch in progress and stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def lines_committed(self, agent_pks: Iterable[int]) -> None:
        """These agents have new lines."""
        self._committed += 1
        if self._dirty is not None:
            self._dirty.update(agent_pks)
        self._wake.set()

    async def caught_up(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until the index holds every line committed in this process so far, so that a
        search finds what its caller has just written; commits of other processes are not waited for."""
        wanted = self._committed
        deadline = asyncio.get_running_loop().time() + timeout
        while self._indexed < wanted and self._task is not None and not self._closing:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._urgent = True
            self._wake.set()
            done = self._pass_done
            try:
                await asyncio.wait_for(done.wait(), left)
            except TimeoutError:
                return

    def lines_removed(self) -> None:
        """An agent was deleted or trimmed: its entries are to go."""
        self._purge_due = True
        self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            try:
                busy = await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is busy or gone: the next pass tries again
                log.warning("search index: a pass failed (%s); retrying in %.0f s", exc, RETRY_AFTER)
                self._dirty = None
                await self._sleep(RETRY_AFTER)
                continue
            if not busy:
                await self._sleep(INDEX_INTERVAL)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        # Commits that come meanwhile gather for one batch, instead of a transaction each; not when a search waits.
        if not self._closing and not self._urgent:
            await asyncio.sleep(GATHER)
        self._urgent = False
        self._wake.clear()

    async def _pass(self) -> bool:
        """One round: every new line, then removals, then one batch of the build; True if work is left."""
        dirty, self._dirty = self._dirty, (set() if self._sees_every_commit else None)
        seen = self._committed
        more = True
        for _ in range(LIVE_BATCHES):
            _count, more = await self.target.live_batch(dirty, BATCH_LINES)
            if not more or self._closing:
                break
        if more:
            # Not caught up yet: the agents looked at stay to look at next time.
            if dirty is None:
                self._dirty = None
            elif self._dirty is not None:
                self._dirty.update(dirty)
        else:
            self._indexed = seen
        self._pass_done.set()
        self._pass_done = asyncio.Event()
        if self._purge_due or not self._sees_every_commit:
            self._purge_due = False
            while await self.target.purge_batch(BATCH_LINES) and not self._closing:
                pass
        if self._closing:
            return False
        return await self._build_step()

    async def _build_step(self) -> bool:
        if self._build_total == 0:
            self._build_total = await self.target.backlog()
            if self._build_total == 0:
                return False
            self._build_started = self._build_logged = time.monotonic()
            log.info("search index: adding %d stored lines in the background", self._build_total)
        added = await self.target.backfill_batch(BATCH_LINES)
        now = time.monotonic()
        if added == 0:
            log.info("search index: built; every stored line is searchable (%.0f s)", now - self._build_started)
            self._build_total = 0
            return False
        if now - self._build_logged >= PROGRESS_EVERY:
            self._build_logged = now
            left = await self.target.backlog()
            done = max(0, self._build_total - left)
            log.info(
                "search index: %d of %d stored lines added (%.0f%%)",
                done,
                self._build_total,
                100.0 * done / max(1, self._build_total),
            )
        return True


def take_in_order(rows_by_agent: dict[int, list[Row]], run: int, *, descending: bool) -> list[list[Row]]:
    """The rows a batch may take so that ids follow time across agents: an agent read to `run` rows may have more,
    later in time (earlier if `descending`) than its last; rows of other agents past the first such last row wait
    for the next batch. Each agent keeps a prefix of its rows, and the agent whose last row sets the limit keeps
    them all, so every batch moves on."""
    full = [rows for rows in rows_by_agent.values() if len(rows) >= run]
    if not full:
        return list(rows_by_agent.values())
    setter = (max if descending else min)(full, key=lambda rows: rows[-1].ts)
    limit = setter[-1].ts
    kept = []
    for rows in rows_by_agent.values():
        if rows is setter:
            kept.append(rows)
            continue
        end = 0
        while end < len(rows) and (rows[end].ts >= limit if descending else rows[end].ts <= limit):
            end += 1
        kept.append(rows[:end])
    return kept


def tsquery_text(words: list[tuple[str, bool]], groups: list[list[str]]) -> str:
    """A PostgreSQL tsquery holding every word (prefix:*) and one tag of each group."""
    parts = [f"'{word}'" + (":*" if prefix else "") for word, prefix in words]
    parts += ["(" + " | ".join(f"'{tag}'" for tag in group) + ")" for group in groups if group]
    return " & ".join(parts)


def fts5_query(words: list[tuple[str, bool]], groups: list[list[str]]) -> str:
    """An SQLite FTS5 query holding every word ("prefix"*) and one tag of each group."""
    parts = [f'"{word}"' + ("*" if prefix else "") for word, prefix in words]
    parts += ["(" + " OR ".join(f'"{tag}"' for tag in group) + ")" for group in groups if group]
    return " AND ".join(parts)


def tag_groups(query: SearchQuery) -> list[list[str]]:
    """The tags a search narrows by: owner, agents, levels (each a group of which a line carries one; the caller
    answers a search over no agent at all without asking the index)."""
    groups: list[list[str]] = []
    if query.owner is not None:
        groups.append([owner_tag(query.owner)])
    if query.agent_pks is not None:
        groups.append([agent_tag(pk) for pk in query.agent_pks])
    groups.append(level_tags(query.min_level))
    return groups
