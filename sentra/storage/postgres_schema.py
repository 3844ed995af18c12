"""The PostgreSQL schema and the row ↔ record conversions, giving the same Agent and Line as storage/sqlite_schema.py.

PostgreSQL text cannot hold U+0000, which SQLite stores; text values pass through `to_pg`/`from_pg`, a
reversible escape that leaves every string without U+0000 or U+FFFF untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sentra.lines import LEVEL_BY_NUMBER, Line
from sentra.models import Agent
from sentra.storage.postgres_summary import SUMMARY_COLUMN
from sentra.summary import RunSummary

# Any constant shared by every Sentra process: serialises schema creation when several start at once.
SCHEMA_LOCK = 0x53454E545241

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    pk BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    labels JSONB NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    last_line_at DOUBLE PRECISION,
    first_seq BIGINT NOT NULL DEFAULT 1,
    last_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS agents_by_owner ON agents (owner, pk);
CREATE INDEX IF NOT EXISTS agents_by_status ON agents (status, updated_at);
CREATE INDEX IF NOT EXISTS agents_by_labels ON agents USING gin (labels jsonb_path_ops);
CREATE TABLE IF NOT EXISTS lines (
    agent_pk BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    level INTEGER NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT,
    PRIMARY KEY (agent_pk, seq)
);
CREATE TABLE IF NOT EXISTS idempotency (
    agent_pk BIGINT NOT NULL,
    key TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (agent_pk, key)
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    id BIGSERIAL PRIMARY KEY,
    jti TEXT NOT NULL UNIQUE,
    revoked_at DOUBLE PRECISION NOT NULL
);
"""

AGENT_COLUMNS = (
    "pk, id, name, owner, status, reason, labels, created_at, updated_at, last_line_at, first_seq, last_seq, "
    "stop_requested_by, "
    f"{SUMMARY_COLUMN}"
)
LINE_COLUMNS = "seq, ts, level, source, message, fields"
_ESC = "\uffff"
_ESCAPED = re.compile("\uffff([01])")


def to_pg(text: str) -> str:
    """`text` with U+0000 (which PostgreSQL text refuses) and the escape character escaped."""
    if "\x00" not in text and _ESC not in text:
        return text
    return text.replace(_ESC, _ESC + "1").replace("\x00", _ESC + "0")


def from_pg(text: str) -> str:
    """The original of a `to_pg` string."""
    if _ESC not in text:
        return text
    return _ESCAPED.sub(lambda match: "\x00" if match.group(1) == "0" else _ESC, text)


def labels_to_pg(labels: Mapping[str, str]) -> str:
    """Labels as the JSONB parameter of an insert, update or containment test."""
    return json.dumps({to_pg(key): to_pg(value) for key, value in labels.items()}, ensure_ascii=False)


def agent_from_row(row: Any) -> Agent:
    """An Agent from a row of AGENT_COLUMNS (labels in key order, as SQLite stores them)."""
    row, summary = row[:-1], row[-1]  # the summary column comes last
    pk, agent_id, name, owner, status, reason, labels, created, updated, last_line_at, first_seq, last_seq, stop = row
    decoded = {from_pg(key): from_pg(value) for key, value in json.loads(labels).items()}
    return Agent(
        pk,
        agent_id,
        from_pg(name),
        from_pg(owner),
        status,
        None if reason is None else from_pg(reason),
        dict(sorted(decoded.items())),
        created,
        updated,
        last_line_at,
        first_seq,
        last_seq,
        stop_requested_by=None if stop is None else from_pg(stop),
        summary=RunSummary.from_wire(summary),
    )


def line_from_row(agent_id: str, row: Any) -> Line:
    """A Line from a row of LINE_COLUMNS."""
    seq, ts, level, source, message, fields = row
    return Line(
        agent_id,
        seq,
        ts,
        LEVEL_BY_NUMBER.get(level, "INFO"),
        from_pg(message),
        from_pg(source),
        json.loads(fields) if fields else {},
    )
