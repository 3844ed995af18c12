"""The reference for ingest: a plain Python loop writing the benchmark's agent lines to SQLite itself.

    python bench/sqlite_loop.py --db /tmp/loop.db --seconds 5

What a script that skipped Sentra and wrote its logs to a database file on the same disk would do: the
standard library's sqlite3, WAL, synchronous=NORMAL (Sentra's default), Sentra's `lines` table, 100-row INSERT
statements, 1,000 rows per transaction, seqs counted up, each transaction stamped with the time. The rows are
those Sentra stores for the lines of wire.agent_line (level as its number, fields as JSON text), made once before
the clock starts: the loop only binds them. Prints one JSON object: rows written, seconds, rows/s (also as
lines_per_s, so the report sets it beside Sentra's figure), the CPU it used.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wire import agent_line

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
ROWS_PER_INSERT = 100
ROWS_PER_TRANSACTION = 1000
DISTINCT_ROWS = 1000  # the lines of one 1,000-line batch, as in the ingest_1000 scenario
SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    agent_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    level INTEGER NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT,
    PRIMARY KEY (agent_pk, seq)
) WITHOUT ROWID
"""


def agent_rows(count: int) -> list[tuple[int, str, str, str]]:
    """(level, source, message, fields JSON) of the first `count` agent lines, as Sentra stores them."""
    rows = []
    for n in range(count):
        line = agent_line(n)
        rows.append(
            (
                LEVELS[line["level"]],
                line["source"],
                line["message"],
                json.dumps(line["fields"], ensure_ascii=False, separators=(",", ":")),
            )
        )
    return rows


def write_for(db: Path, seconds: float) -> dict[str, Any]:
    """Insert agent rows for about `seconds` (whole transactions) and say how many went in how fast."""
    rows = agent_rows(DISTINCT_ROWS)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    insert = "INSERT INTO lines (agent_pk, seq, ts, level, source, message, fields) VALUES " + ",".join(
        ["(?, ?, ?, ?, ?, ?, ?)"] * ROWS_PER_INSERT
    )
    seq = 0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        now = time.time()
        conn.execute("BEGIN")
        for first in range(0, ROWS_PER_TRANSACTION, ROWS_PER_INSERT):
            values: list[Any] = []
            for level, source, message, fields in rows[first : first + ROWS_PER_INSERT]:
                seq += 1
                values += (1, seq, now, level, source, message, fields)
            conn.execute(insert, values)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    conn.close()
    cores = (used.ru_utime - cpu.ru_utime + used.ru_stime - cpu.ru_stime) / elapsed
    return {
        "rows": seq,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(seq / elapsed, 1),
        "lines_per_s": round(seq / elapsed, 1),
        "server_cores": round(cores, 2),
        "bottleneck": "one Python thread writing SQLite",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the database file (made if missing)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(write_for(args.db, args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
