"""Run summaries and the volume index in PostgreSQL: the same tables and rules as storage/sqlite_summary.py.

Every write happens with the agent's row locked (FOR UPDATE) in the same transaction, so two processes' commits
to one agent add up in order; the UPSERTs add to what is stored (RETURNING the sums), never write a value read
before the lock was taken.
"""

from __future__ import annotations

from typing import Any

from sentra.models import Agent
from sentra.summary import ERROR_LEVEL, RunSummary, Tally, add_volume
from sentra.volume import VolumeSpan

SUMMARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_summary (
    agent_pk BIGINT PRIMARY KEY,
    debug BIGINT NOT NULL DEFAULT 0,
    info BIGINT NOT NULL DEFAULT 0,
    warning BIGINT NOT NULL DEFAULT 0,
    error BIGINT NOT NULL DEFAULT 0,
    critical BIGINT NOT NULL DEFAULT 0,
    first_error_seq BIGINT,
    tokens DOUBLE PRECISION NOT NULL DEFAULT 0,
    cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    usage_lines BIGINT NOT NULL DEFAULT 0,
    ended_at DOUBLE PRECISION,
    counted_below BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS agent_summary_backfill ON agent_summary (counted_below) WHERE counted_below > 0;
CREATE TABLE IF NOT EXISTS agent_volume (
    agent_pk BIGINT NOT NULL,
    granule INTEGER NOT NULL,
    start BIGINT NOT NULL,
    level INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (agent_pk, granule, start, level)
);
"""

_FIELDS = "debug, info, warning, error, critical, first_error_seq, tokens, cost, usage_lines, ended_at"
SUMMARY_COLUMN = (
    f"(SELECT json_build_array({_FIELDS})::text FROM agent_summary WHERE agent_summary.agent_pk = agents.pk)"
)
_RETURNING = f"RETURNING {_FIELDS}"
BACKFILL_LINES = 20_000
_USAGE = (
    "SELECT count(*), coalesce(sum(t), 0), coalesce(sum(c), 0) FROM (SELECT "
    "CASE WHEN jsonb_typeof(f -> 'tokens') = 'number' THEN (f ->> 'tokens')::float8 END AS t, "
    "CASE WHEN jsonb_typeof(f -> 'cost') = 'number' THEN (f ->> 'cost')::float8 END AS c "
    "FROM (SELECT fields::jsonb AS f FROM lines WHERE agent_pk = $1 AND seq >= $2 AND seq < $3 "
    "AND fields IS NOT NULL AND (fields LIKE '%tokens%' OR fields LIKE '%cost%')) AS matching) AS usage "
    "WHERE t IS NOT NULL OR c IS NOT NULL"
)


def _summary(row: Any) -> RunSummary:
    return RunSummary.from_wire(list(row))


async def create_summary_schema(conn: Any) -> None:
    """Create the tables (under the schema lock); on a database made without them, mark every agent's stored
    lines as not yet counted."""
    existed = await conn.fetchval("SELECT to_regclass('agent_summary') IS NOT NULL")
    await conn.execute(SUMMARY_SCHEMA)
    if not existed:
        await conn.execute(
            "INSERT INTO agent_summary (agent_pk, ended_at, counted_below) "
            "SELECT pk, CASE WHEN status != 'running' THEN updated_at END, last_seq + 1 FROM agents "
            "ON CONFLICT (agent_pk) DO NOTHING"
        )


async def add_tallies(conn: Any, tallies: dict[int, Tally], sign: int = 1) -> dict[int, RunSummary]:
    """Add (sign 1) or subtract (sign -1) each agent pk's tally to its summary and volume; the new summaries.

    Two statements whatever the number of agents (a group commit of many agents pays no round trip per agent).
    The agents' rows are locked already, so the summary rows these UPSERTs lock are nobody else's meanwhile."""
    pks = list(tallies)
    counts = [tally.counts() for tally in tallies.values()]
    rows = await conn.fetch(
        "INSERT INTO agent_summary AS s (agent_pk, debug, info, warning, error, critical, first_error_seq, tokens, "
        "cost, usage_lines) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], "
        "$5::bigint[], $6::bigint[], $7::bigint[], $8::float8[], $9::float8[], $10::bigint[]) "
        "ON CONFLICT (agent_pk) DO UPDATE SET "
        "debug = s.debug + excluded.debug, info = s.info + excluded.info, warning = s.warning + excluded.warning, "
        "error = s.error + excluded.error, critical = s.critical + excluded.critical, "
        "first_error_seq = least(s.first_error_seq, excluded.first_error_seq), tokens = s.tokens + excluded.tokens, "
        f"cost = s.cost + excluded.cost, usage_lines = s.usage_lines + excluded.usage_lines "
        f"RETURNING agent_pk, {_FIELDS}",
        pks,
        *([sign * row[level] for row in counts] for level in range(5)),
        [tally.first_error_seq if sign > 0 else None for tally in tallies.values()],
        [sign * tally.tokens for tally in tallies.values()],
        [sign * tally.cost for tally in tallies.values()],
        [sign * tally.usage_lines for tally in tallies.values()],
    )
    volume = [(pk, *key, sign * n) for pk, tally in tallies.items() for key, n in tally.volume.items()]
    await conn.execute(
        "INSERT INTO agent_volume AS v (agent_pk, granule, start, level, n) "
        "SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::int[], $5::bigint[]) "
        "ON CONFLICT (agent_pk, granule, start, level) DO UPDATE SET n = v.n + excluded.n",
        *([row[column] for row in volume] for column in range(5)),
    )
    if sign < 0:
        await conn.execute("DELETE FROM agent_volume WHERE agent_pk = ANY($1::bigint[]) AND n <= 0", pks)
    return {row[0]: _summary(row[1:]) for row in rows}


async def add_tally(conn: Any, pk: int, tally: Tally, sign: int = 1) -> RunSummary:
    """add_tallies for one agent."""
    return (await add_tallies(conn, {pk: tally}, sign))[pk]


async def mark_ended(conn: Any, agent: Agent) -> None:
    """Record the time a run finished (its status changed to completed or failed); sets agent.summary."""
    row = await conn.fetchrow(
        "INSERT INTO agent_summary AS s (agent_pk, ended_at) VALUES ($1, $2) "
        f"ON CONFLICT (agent_pk) DO UPDATE SET ended_at = excluded.ended_at {_RETURNING}",
        agent.pk,
        agent.updated_at,
    )
    agent.summary = _summary(row)


async def forget(conn: Any, pk: int) -> None:
    """Remove a deleted agent's summary and volume."""
    await conn.execute("DELETE FROM agent_summary WHERE agent_pk = $1", pk)
    await conn.execute("DELETE FROM agent_volume WHERE agent_pk = $1", pk)


async def stored_tally(conn: Any, pk: int, low: int, high: int) -> Tally:
    """The tally of the agent's stored lines with low <= seq < high, counted by SQL."""
    tally = Tally()
    rows = await conn.fetch(
        "SELECT floor(ts)::bigint AS second, level, count(*) FROM lines "
        "WHERE agent_pk = $1 AND seq >= $2 AND seq < $3 GROUP BY second, level",
        pk,
        low,
        high,
    )
    for second, level, count in rows:
        tally.levels[level] += count
        add_volume(tally.volume, second, level, count)
    if any(level >= ERROR_LEVEL for level in tally.levels):
        tally.first_error_seq = await conn.fetchval(
            "SELECT min(seq) FROM lines WHERE agent_pk = $1 AND seq >= $2 AND seq < $3 AND level >= $4",
            pk,
            low,
            high,
            ERROR_LEVEL,
        )
    usage_lines, tokens, cost = await conn.fetchrow(_USAGE, pk, low, high)
    tally.usage_lines, tally.tokens, tally.cost = usage_lines, float(tokens), float(cost)
    return tally


async def trimmed(conn: Any, before: Agent, agent: Agent) -> None:
    """Before retention deletes the lines below agent.first_seq: take the counted ones out of the summary."""
    counted_below = await conn.fetchval("SELECT counted_below FROM agent_summary WHERE agent_pk = $1", agent.pk)
    low = max(before.first_seq, counted_below or 0)
    if low < agent.first_seq:
        agent.summary = await add_tally(conn, agent.pk, await stored_tally(conn, agent.pk, low, agent.first_seq), -1)
    first_error = agent.summary.first_error_seq
    if first_error is not None and first_error < agent.first_seq:
        # The first error was retention's: the next one among the counted lines, if any.
        row = await conn.fetchrow(
            "UPDATE agent_summary SET first_error_seq = (SELECT min(seq) FROM lines WHERE agent_pk = $1 "
            f"AND seq >= $2 AND level >= $3) WHERE agent_pk = $1 {_RETURNING}",
            agent.pk,
            max(agent.first_seq, low),
            ERROR_LEVEL,
        )
        agent.summary = _summary(row)


async def backfill_step(conn: Any) -> tuple[str, RunSummary] | None:
    """Count one slice of lines an older version stored uncounted; (agent id, new summary), or None when done.
    The agent's row is locked first, as ingest locks it, so a slice and a commit to the agent never interleave
    (and another process counting the same agent waits, then carries on from where this one stopped)."""
    pk = await conn.fetchval("SELECT agent_pk FROM agent_summary WHERE counted_below > 0 LIMIT 1")
    if pk is None:
        return None
    agent = await conn.fetchrow("SELECT id, first_seq FROM agents WHERE pk = $1 FOR UPDATE", pk)
    if agent is None:
        await forget(conn, pk)
        return "", RunSummary()
    below = await conn.fetchval("SELECT counted_below FROM agent_summary WHERE agent_pk = $1 FOR UPDATE", pk)
    agent_id, first_seq = agent
    low = max(first_seq, below - BACKFILL_LINES)
    if below > 0 and low < below:
        await add_tally(conn, pk, await stored_tally(conn, pk, low, below))
    row = await conn.fetchrow(
        f"UPDATE agent_summary SET counted_below = $1 WHERE agent_pk = $2 {_RETURNING}",
        0 if below == 0 or low <= first_seq else low,
        pk,
    )
    return agent_id, _summary(row)


async def volume_rows(fetch: Any, pk: int, span: VolumeSpan) -> list[tuple[Any, ...]]:
    """(bucket number, level, count) of the agent's lines in `span`, from the volume index."""
    rows = await fetch(
        "SELECT floor((start - $1::float8) / $2::float8)::bigint AS bucket, level, sum(n) FROM agent_volume "
        "WHERE agent_pk = $3 AND granule = $4 AND start >= $5::bigint AND start <= $6::bigint GROUP BY bucket, level",
        span.start,
        span.width,
        pk,
        span.granule,
        span.first_row(),
        span.last_row(),
    )
    return [tuple(row) for row in rows]


async def stored_seconds(fetch: Any, pk: int) -> tuple[int | None, int | None]:
    """The first and last second holding a stored line of the agent (None, None without lines)."""
    rows = await fetch("SELECT min(start), max(start) FROM agent_volume WHERE agent_pk = $1 AND granule = 1", pk)
    first, last = rows[0]
    return first, last
