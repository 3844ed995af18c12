"""The word index's writer, apart from any database: what the index holds for a line, the order lines enter it,
the batches it takes them in, and the task that keeps it up with the lines (storage/sqlite_search.py and
postgres_search.py do the SQL).

Each line is held as its words (sentra.storage.words) and three tags: its agent, its level and its agent's owner,
so that filters narrow in the index itself. A line whose message is ASCII without ESC and has no fields is indexed by
the database alone: its words are the runs of ASCII letters and digits, which SQL splits out as the rule does, so
most lines of a busy ingest cost no Python (the measurement is in docs/performance.md#search). Others go through
sentra.storage.words.index_words.

Every line gets an id in the index, which orders search results (newest first) and pages them. Lines committed
while the index runs get ids counting up from LIVE_BASE; lines stored before the index existed are added in the
background, newest first, with ids counting down from it, so search results stay newest first while the index is
built. Within a batch lines are ordered by time across agents; within an agent ids follow seqs.

The index is written in transactions of its own, never in the group commit: ingest and live streams never wait for
it, and a line becomes searchable within about a second of its commit (INDEX_INTERVAL, plus the batch's time).
"""

from __future__ import annotations

import asyncio
import hashlib
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


# Tags begin with a character no word holds (words are letters and digits), which both tokenizers keep in a token.
TAG = "\u00b7"


class Span(NamedTuple):
    """The seqs of one agent a batch takes (first..last), and its owner's tag."""

    agent_pk: int
    first: int
    last: int
    owner_tag: str


def agent_tag(pk: int) -> str:
    """The index word every line of agent `pk` carries."""
    return f"{TAG}a{pk}"


def owner_tag(owner: str) -> str:
    """The index word every line of `owner`'s agents carries."""
    return f"{TAG}u" + hashlib.sha1(owner.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def level_tags(min_level: int) -> list[str]:
    """The index words of the levels at or above `min_level` (none when every level is)."""
    if min_level <= min(LEVELS.values()):
        return []
    return [f"{TAG}l{number}" for number in LEVELS.values() if number >= min_level]


def rule_words(message: str, fields: str | None) -> str:
    """The words of a stored line (its fields as stored JSON) as sentra.storage.words makes them."""
    return index_words(message, json.loads(fields) if fields else {})


def live_spans(behind: list[tuple[int, str, int, int, int | None]], max_lines: int) -> tuple[list[Span], bool]:
    """The spans of a batch of new lines, from (pk, owner, first_seq, last_seq, high or None) of agents with lines
    the index lacks: at most `max_lines` in all; True if some are left for the next batch."""
    agents = behind[: max(1, max_lines // AGENT_RUN)]
    run = max(AGENT_RUN, max_lines // len(agents))
    spans = []
    more = len(agents) < len(behind)
    for pk, owner, first_seq, last_seq, high in agents:
        first = first_seq if high is None else max(high + 1, first_seq)
        last = min(last_seq, first + run - 1)
        more = more or last < last_seq
        spans.append(Span(pk, first, last, owner_tag(owner)))
    return spans, more


def build_spans(pending: list[tuple[int, str, int, int]], max_lines: int) -> list[Span]:
    """The spans of a batch of the background build, from (pk, owner, first_seq, low) of agents with stored lines
    below `low` the index lacks: the newest of them, at most `max_lines` in all."""
    agents = pending[: max(1, max_lines // AGENT_RUN)]
    run = max(AGENT_RUN, max_lines // len(agents))
    return [Span(pk, max(first_seq, low - run), low - 1, owner_tag(owner)) for pk, owner, first_seq, low in agents]


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

    def nudge(self) -> None:
        """Look for new lines now (a search waits for them), not at the next interval."""
        self._urgent = True
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
        # New lines left over (more than LIVE_BATCHES batches came in) are work left too: the next pass starts at
        # once instead of after INDEX_INTERVAL, so the index catches up after a burst at its own speed.
        return await self._build_step() or more

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
