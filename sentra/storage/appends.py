"""An ingest batch apart from any database: its jobs, what it did, and the rules every storage writer applies."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from sentra.attachments import Attachment
from sentra.errors import ApiError, Conflict, Forbidden
from sentra.lines import NO_LINES, CommittedLines, NewLines
from sentra.models import Agent, AppendResult


@dataclass(frozen=True, eq=False)
class AppendGroup:
    """The agents one request appends to: its jobs, queued one after another, are stored all together or none."""

    agent_ids: tuple[str, ...]


@dataclass
class AppendJob:
    """One ingest request's lines, as handed to the writer (or one agent's part of a request to several: `group`)."""

    agent_id: str
    subject: str
    may_write_any: bool
    lines: NewLines
    key: str | None
    name: str
    labels: dict[str, str]
    group: AppendGroup | None = None
    # Files stored in the same transaction as the lines that carry their records (sentra/attachments.py).
    attachments: tuple[Attachment, ...] = ()


@dataclass
class BatchOutcome:
    """What one group commit did: per job a result or an error, and the agents it changed."""

    results: list[AppendResult | ApiError] = field(default_factory=list)
    lines: list[CommittedLines] = field(default_factory=list)
    staged: dict[str, Agent] = field(default_factory=dict)
    created: list[Agent] = field(default_factory=list)
    line_count: int = 0
    byte_count: int = 0

    def answer(self, result: AppendResult | ApiError, lines: CommittedLines = NO_LINES) -> None:
        """Record the next job's answer and the lines it committed (none for a refusal or a replay)."""
        self.results.append(result)
        self.lines.append(lines)


def admit(job: AppendJob, agent: Agent, replay: AppendResult | None) -> AppendResult | None:
    """The stored answer of a retried request, or None when the job's lines may be appended;
    Forbidden for another user's agent, Conflict for a finished one."""
    if agent.owner != job.subject and not job.may_write_any:
        raise Forbidden(f"agent {agent.id!r} belongs to another user", code="not_owner")
    if replay is not None:
        return replay
    if agent.finished:
        raise Conflict(
            f"agent {agent.id!r} is {agent.status}; a finished agent takes no more lines",
            code="agent_finished",
        )
    return None


def group_refusal(job: AppendJob, agent_of: Callable[[str], Agent | None]) -> ApiError | None:
    """At the first job of a group: what refuses the whole group (one of its agents is another user's, or
    finished), or None. `agent_of` gives an agent as the batch has it so far (None: not created yet). A group's
    jobs share their caller and carry no Idempotency-Key."""
    assert job.group is not None
    for agent_id in job.group.agent_ids:
        agent = agent_of(agent_id)
        if agent is not None:
            try:
                admit(job, agent, None)
            except ApiError as exc:
                return exc
    return None


def advance(agent: Agent, count: int, now: float) -> AppendResult:
    """Move the staged agent past `count` lines just numbered from its last seq; the job's answer."""
    first = agent.last_seq + 1
    agent.last_seq += count
    if count:
        agent.last_line_at = now
    agent.updated_at = now
    return AppendResult(count, first, agent.last_seq)


def stored_answer(response: str) -> AppendResult:
    """The answer kept for an Idempotency-Key, as a replay."""
    answer = json.loads(response)
    return AppendResult(answer["accepted"], answer["first_seq"], answer["last_seq"], True)


def replay_of(result: AppendResult) -> AppendResult:
    """What a retry of the request answered with `result` gets."""
    return AppendResult(result.accepted, result.first_seq, result.last_seq, True)
