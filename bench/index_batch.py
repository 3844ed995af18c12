"""Micro-benchmark of the SQLite search index's writer: batches of the benchmark's agent lines, in this process.

    python bench/index_batch.py [--lines 5000] [--rounds 12] [--agents 1] [--unique-fields]

Stores `rounds` batches of `lines` agent lines (wire.agent_line; spread over `agents` agents; with --unique-fields
each line's fields also hold a request id, so no two are alike) with Sentra's writer, and after each has the index
(this checkout's, or the one PYTHONPATH names, to compare two versions) take them in one batch, as its thread does
after a commit. Prints one JSON object: microseconds per line, median and best of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))  # this checkout, unless PYTHONPATH names another

from wire import agent_line


def measure(lines: int, rounds: int, agents: int, unique_fields: bool) -> dict[str, Any]:
    """Microseconds per line the index takes for a batch of `lines` new lines, `rounds` times."""
    from sentra.lines import LEVELS
    from sentra.storage.sqlite_search import IndexWriterConnection
    from sentra.storage.sqlite_writer import WriteConnection

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "sentra.db")
        writer = WriteConnection(path, "NORMAL")
        writer.open()
        for pk in range(1, agents + 1):
            writer.db.execute(
                "INSERT INTO agents (pk, id, owner, status, created_at, updated_at) "
                "VALUES (?, ?, 'alice', 'running', 0, 0)",
                (pk, f"agent-{pk}"),
            )
        index = IndexWriterConnection(path)
        index._open(writer.database_id)
        times = []
        for round_ in range(rounds):
            values: list[Any] = []
            for n in range(round_ * lines, (round_ + 1) * lines):
                line = agent_line(n)
                fields = {**line["fields"], "request": f"r{n:08x}"} if unique_fields else line["fields"]
                values += (1 + n % agents, n // agents + 1, 1.7e9 + n / 1000, LEVELS[line["level"]])
                values += (line["source"], line["message"], json.dumps(fields))
            last_seq = (round_ + 1) * lines // agents

            def commit(values: list[Any] = values, last_seq: int = last_seq) -> None:
                writer._insert_lines(values)
                writer.db.execute("UPDATE agents SET last_seq = ?", (last_seq,))

            writer.transaction(commit)
            started = time.perf_counter()
            indexed, _more = index._live(set(range(1, agents + 1)), lines)
            times.append(time.perf_counter() - started)
            assert indexed == lines, indexed
        index._close()
        writer.close()
    return {
        "sentra": str(Path(sys.modules["sentra"].__file__ or "").resolve().parent.parent),
        "lines": lines,
        "agents": agents,
        "unique_fields": unique_fields,
        "median_us_per_line": round(statistics.median(times) / lines * 1e6, 2),
        "best_us_per_line": round(min(times) / lines * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000, help="lines per batch (the index takes 5,000 at most)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--unique-fields", action="store_true", help="no two lines' fields alike")
    args = parser.parse_args()
    print(json.dumps(measure(args.lines, args.rounds, args.agents, args.unique_fields)))


if __name__ == "__main__":
    main()
