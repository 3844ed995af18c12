"""The queue in front of a storage's one writer: appends that arrive while a commit runs form the next batch."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sentra.errors import ApiError, ServiceUnavailable
from sentra.lines import CommittedLines
from sentra.models import AppendResult, CommitListener
from sentra.storage.appends import AppendJob, BatchOutcome

W = TypeVar("W")
# When more than one and fewer than this many writes wait, the batch is taken one turn of the event loop later, so
# that the requests that came in meanwhile join it: the clients the last commit answered send their next at once,
# and a commit costs about as much for one request as for several. Measured (docs/performance.md, fourteenth round),
# three alternating pairs: one-line POSTs on 8 connections 7,400 -> 8,308/s, 100 agents' publishers 44,973 ->
# 48,336 deliveries/s, paced p99 2.44 -> 2.52 ms. Waiting a turn for every batch gave one-line POSTs +42% but 100
# agents' publishers -13% (why was not measured): with this bound a long queue is taken as it was.
GATHER_BELOW = 8


@dataclass
class Append:
    """An ingest request waiting for the commit of its batch."""

    job: AppendJob
    future: asyncio.Future[AppendResult]


@dataclass
class Task(Generic[W]):
    """Other work for the writer (one transaction), and what to do on the event loop once it has committed."""

    work: W
    after: Callable[[Any], Any]
    future: asyncio.Future[Any]


class WriteQueue(Generic[W]):
    """Feeds one writer in order: runs of appends as one batch (group commit), other tasks one at a time.

    `run_appends` commits a batch and returns each job's answer (or raises: every job gets that error);
    `run_task` returns what the task's caller gets (or raises). The queue answers the callers.
    """

    def __init__(
        self,
        commit_max_lines: int,
        run_appends: Callable[[list[AppendJob]], Awaitable[list[AppendResult | ApiError]]],
        run_task: Callable[[Task[W]], Awaitable[Any]],
        after_each: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.commit_max_lines = commit_max_lines
        self._run_appends = run_appends
        self._run_task = run_task
        self._after_each = after_each
        self._queue: deque[Append | Task[W]] = deque()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False

    def start(self) -> None:
        """Start feeding the writer."""
        self._loop_task = asyncio.create_task(self._feed())

    async def close(self) -> None:
        """Run everything queued, then stop; later writes are refused."""
        self._closing = True
        if self._loop_task is not None:
            self._wake.set()
            await self._loop_task
            self._loop_task = None

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued write has committed (or failed) and been answered."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def append(self, job: AppendJob) -> asyncio.Future[AppendResult]:
        """Queue an ingest request; the future is done once its batch has committed (or failed). The jobs of a
        group are appended one after another, with nothing between them: they go into one batch."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._enqueue(Append(job, future))
        return future

    async def submit(self, work: W, after: Callable[[Any], Any]) -> Any:
        """Queue other work; returns what `after` makes of its outcome once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(Task(work, after, future))
        return await future

    def _enqueue(self, item: Append | Task[W]) -> None:
        if self._closing and self._loop_task is None:
            raise ServiceUnavailable("the server is shutting down")
        self._queue.append(item)
        self._wake.set()

    async def _feed(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            self._busy = True
            if 1 < len(self._queue) < GATHER_BELOW:
                await asyncio.sleep(0)  # see GATHER_BELOW
            head = self._queue.popleft()
            if isinstance(head, Task):
                try:
                    _settle(head.future, await self._run_task(head))
                except Exception as exc:
                    _settle(head.future, exc)
            else:
                batch = [head]
                size = len(head.job.lines)
                while self._queue and isinstance(self._queue[0], Append):
                    job = self._queue[0].job
                    # A full batch still takes the rest of a group it holds: a group is committed whole.
                    if size + len(job.lines) > self.commit_max_lines and (
                        job.group is None or job.group is not batch[-1].job.group
                    ):
                        break
                    item = self._queue.popleft()
                    assert isinstance(item, Append)
                    batch.append(item)
                    size += len(item.job.lines)
                try:
                    results: list[Any] = list(await self._run_appends([item.job for item in batch]))
                except Exception as exc:
                    results = [exc] * len(batch)
                for item, result in zip(batch, results, strict=True):
                    _settle(item.future, result)
            if self._after_each is not None:
                await self._after_each()
            self._busy = False


def announce(outcome: BatchOutcome, jobs: list[AppendJob], listener: CommitListener | None) -> None:
    """Tell the listener what a batch committed: new agents, then one notice per agent.

    Called before any request of the batch is answered, so a line is live everywhere before its writer learns
    it was accepted. One notice per agent: what several requests committed together reaches each subscriber
    as one write.
    """
    if listener is None:
        return
    for new in outcome.created:
        listener.agent_changed(outcome.staged.get(new.id, new))
    by_agent: dict[str, list[CommittedLines]] = {}
    for job, lines in zip(jobs, outcome.lines, strict=True):
        if lines.parts:
            by_agent.setdefault(job.agent_id, []).append(lines)
    for agent_id, runs in by_agent.items():
        listener.lines_committed(outcome.staged[agent_id], CommittedLines.joined(runs))


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    # A caller that stopped waiting (its task was cancelled, e.g. maintenance at shutdown) leaves a cancelled
    # future: the work is done or failed all the same, and the writer goes on with the next.
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
