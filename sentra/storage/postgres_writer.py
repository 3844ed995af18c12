"""The PostgreSQL write side: every function runs on the writer connection inside one transaction, and
storage/postgres.py applies the outcome (cache, listeners, answers) after the commit."""

from __future__ import annotations

import json
import time
from itertools import count, repeat
from typing import Any

from sentra.errors import ApiError, Conflict, NotFound, ServiceUnavailable
from sentra.line_values import ROW_WIDTH
from sentra.lines import CommittedLines
from sentra.models import Agent
from sentra.storage.appends import (
    AppendGroup,
    AppendJob,
    BatchOutcome,
    admit,
    advance,
    group_refusal,
    replay_of,
    stored_answer,
)
from sentra.storage.postgres_attachments import insert_attachments
from sentra.storage.postgres_schema import AGENT_COLUMNS, agent_from_row, labels_to_pg, to_pg
from sentra.storage.postgres_summary import add_tallies, forget, mark_ended, trimmed
from sentra.storage.postgres_webhooks import queue_agent_event, queue_line_matches
from sentra.storage.shares import revoke_agent_shares_pg
from sentra.summary import tally_batch
from sentra.webhooks.events import LineHooks

CREATE_ATTEMPTS = 3


async def locked_agent(conn: Any, agent_id: str) -> Agent | None:
    """The committed agent, its row locked until the transaction ends; None if there is none."""
    row = await conn.fetchrow(f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 FOR UPDATE", agent_id)
    return None if row is None else agent_from_row(row)


async def insert_agent(
    conn: Any, agent_id: str, owner: str, name: str, labels: dict[str, str], now: float
) -> Agent | None:
    """A new running agent (its row locked until commit), or None if the id is taken."""
    pk = await conn.fetchval(
        "INSERT INTO agents (id, name, owner, status, labels, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'running', $4::jsonb, $5, $5) ON CONFLICT (id) DO NOTHING RETURNING pk",
        agent_id,
        to_pg(name),
        to_pg(owner),
        labels_to_pg(labels),
        now,
    )
    return None if pk is None else Agent(pk, agent_id, name, owner, "running", None, labels, now, now)


async def create_agent(conn: Any, *, agent_id: str, owner: str, name: str, labels: dict[str, str]) -> Agent:
    """Create a running agent; Conflict if the id is taken."""
    agent = await insert_agent(conn, agent_id, owner, name, labels, time.time())
    if agent is None:
        raise Conflict(f"agent {agent_id!r} already exists", code="agent_exists")
    return agent


async def update_agent(conn: Any, *, agent_id: str, changes: dict[str, Any]) -> Agent:
    """Apply status/reason/name/labels; a finished agent never changes status again."""
    current = await locked_agent(conn, agent_id)
    if current is None:
        raise NotFound(f"agent {agent_id!r} was deleted", code="agent_not_found")
    agent = current.changed(changes, time.time())
    await conn.execute(
        "UPDATE agents SET status = $1, reason = $2, name = $3, labels = $4::jsonb, updated_at = $5 WHERE pk = $6",
        agent.status,
        None if agent.reason is None else to_pg(agent.reason),
        to_pg(agent.name),
        labels_to_pg(agent.labels),
        agent.updated_at,
        agent.pk,
    )
    await queue_agent_event(conn, current, agent)
    if agent.finished and not current.finished:
        await mark_ended(conn, agent)
    return agent


async def delete_agent(conn: Any, *, agent_id: str) -> Agent | None:
    """Remove the agent, its lines and its idempotency keys; the removed agent, if there was one."""
    row = await conn.fetchrow(f"DELETE FROM agents WHERE id = $1 RETURNING {AGENT_COLUMNS}", agent_id)
    if row is None:
        return None
    agent = agent_from_row(row)
    for table in ("lines", "idempotency"):
        await conn.execute(f"DELETE FROM {table} WHERE agent_pk = $1", agent.pk)
    await revoke_agent_shares_pg(conn, agent.pk)
    await forget(conn, agent.pk)
    return agent


async def trim(conn: Any, *, agent_id: str, max_lines: int) -> Agent | None:
    """Keep the newest `max_lines` lines of the agent; the changed agent, if anything was removed."""
    current = await locked_agent(conn, agent_id)
    if current is None or current.line_count <= max_lines:
        return None
    agent = current.copy()
    agent.first_seq = agent.last_seq - max_lines + 1
    await trimmed(conn, current, agent)
    await conn.execute("DELETE FROM lines WHERE agent_pk = $1 AND seq < $2", agent.pk, agent.first_seq)
    await conn.execute("UPDATE agents SET first_seq = $1 WHERE pk = $2", agent.first_seq, agent.pk)
    return agent


async def prune_keys(conn: Any, *, older_than: float) -> None:
    """Forget idempotency answers recorded before `older_than`."""
    await conn.execute("DELETE FROM idempotency WHERE created_at < $1", older_than)


async def _lock_agents(conn: Any, jobs: list[AppendJob], now: float, out: BatchOutcome) -> dict[str, Agent]:
    """Every agent the batch writes to, locked in id order (so two writers never deadlock), created if new."""
    first_job: dict[str, AppendJob] = {}
    for job in jobs:
        first_job.setdefault(job.agent_id, job)
    ids = sorted(first_job)
    rows = await conn.fetch(
        f"SELECT {AGENT_COLUMNS} FROM agents WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids
    )
    agents = {agent.id: agent for agent in map(agent_from_row, rows)}
    for agent_id in ids:
        for _ in range(CREATE_ATTEMPTS):
            if agent_id in agents:
                break
            job = first_job[agent_id]
            created = await insert_agent(conn, agent_id, job.subject, job.name, job.labels, now)
            if created is not None:
                out.created.append(created)
                agents[agent_id] = created
                break
            # Another process created it meanwhile (and may delete it again before we lock it).
            locked = await locked_agent(conn, agent_id)
            if locked is not None:
                agents[agent_id] = locked
        else:
            raise ServiceUnavailable(f"agent {agent_id!r} is being created and deleted at once; retry")
    return agents


async def _stored_answers(conn: Any, jobs: list[AppendJob], agents: dict[str, Agent]) -> dict[tuple[str, str], Any]:
    keyed = [(job.agent_id, job.key) for job in jobs if job.key is not None]
    if not keyed:
        return {}
    by_pk = {agent.pk: agent.id for agent in agents.values()}
    rows = await conn.fetch(
        "SELECT i.agent_pk, i.key, i.response FROM idempotency i "
        "JOIN unnest($1::bigint[], $2::text[]) AS k(agent_pk, key) USING (agent_pk, key)",
        [agents[agent_id].pk for agent_id, _ in keyed],
        [key for _, key in keyed],
    )
    return {(by_pk[pk], key): stored_answer(response) for pk, key, response in rows}


async def _drop_unwritten(conn: Any, out: BatchOutcome) -> None:
    """Agents _lock_agents created for a group that was then refused, and written by no other job: not created."""
    unwritten = [agent for agent in out.created if agent.id not in out.staged]
    if unwritten:
        await conn.execute("DELETE FROM agents WHERE pk = ANY($1::bigint[])", [agent.pk for agent in unwritten])
        out.created = [agent for agent in out.created if agent.id in out.staged]


async def append_batch(conn: Any, jobs: list[AppendJob], hooks: LineHooks | None = None) -> BatchOutcome:
    """Check, number and insert every job's lines in one transaction (the group commit), with the lines.matched
    events of `hooks`."""
    out = BatchOutcome()
    now = time.time()
    committed = await _lock_agents(conn, jobs, now, out)
    replies = await _stored_answers(conn, jobs, committed)
    line_rows: list[tuple[Any, ...]] = []
    key_rows: list[tuple[Any, ...]] = []
    group: AppendGroup | None = None
    refusal: ApiError | None = None
    refused_any = False
    for job in jobs:
        if job.group is not None:
            if job.group is not group:
                group = job.group
                refusal = group_refusal(job, lambda agent_id: out.staged.get(agent_id) or committed.get(agent_id))
                refused_any = refused_any or refusal is not None
            if refusal is not None:
                out.answer(refusal)
                continue
        agent = out.staged.get(job.agent_id) or committed[job.agent_id].copy()
        try:
            answer = admit(job, agent, replies.get((job.agent_id, job.key)) if job.key is not None else None)
        except ApiError as exc:
            out.answer(exc)
            continue
        if answer is not None:
            out.answer(answer)
            continue
        out.staged[job.agent_id] = agent
        first = agent.last_seq + 1
        rows = job.lines.rows
        line_rows += zip(
            repeat(agent.pk),
            count(first),
            rows[2::ROW_WIDTH],
            rows[3::ROW_WIDTH],
            map(to_pg, rows[4::ROW_WIDTH]),
            map(to_pg, rows[5::ROW_WIDTH]),
            rows[6::ROW_WIDTH],
        )
        result = advance(agent, len(job.lines), now)
        if job.key is not None:
            replies[(job.agent_id, job.key)] = replay_of(result)
            key_rows.append((agent.pk, job.key, json.dumps(result.to_json()), now))
        out.answer(result, CommittedLines(job.agent_id, [(first, job.lines)]))
    if refused_any:
        await _drop_unwritten(conn, out)
    if line_rows:
        await conn.copy_records_to_table(
            "lines", records=line_rows, columns=["agent_pk", "seq", "ts", "level", "source", "message", "fields"]
        )
        await insert_attachments(conn, jobs, out)
    tallies = tally_batch(out.lines)
    if tallies:
        summaries = await add_tallies(conn, {out.staged[agent_id].pk: tally for agent_id, tally in tallies.items()})
        for agent_id in tallies:
            out.staged[agent_id].summary = summaries[out.staged[agent_id].pk]
    if out.staged:
        await conn.executemany(
            "UPDATE agents SET last_seq = $1, last_line_at = $2, updated_at = $3 WHERE pk = $4",
            [(a.last_seq, a.last_line_at, a.updated_at, a.pk) for a in out.staged.values()],
        )
    if key_rows:
        await conn.executemany(
            "INSERT INTO idempotency (agent_pk, key, response, created_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (agent_pk, key) DO UPDATE SET response = excluded.response, created_at = excluded.created_at",
            key_rows,
        )
    if hooks is not None:
        await queue_line_matches(conn, hooks, out.staged, zip((job.agent_id for job in jobs), out.lines, strict=True))
    out.line_count = len(line_rows)
    return out
