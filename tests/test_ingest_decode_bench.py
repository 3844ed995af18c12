"""The benchmark's ingest reference: the plain Python loop writes to SQLite exactly the rows Sentra stores for the
benchmark's agent lines, and the report sets Sentra's 1,000-line batches beside it as a same-run ratio."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

from sentra.lines import LEVELS, parse_body

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import run  # noqa: E402
from sqlite_loop import DISTINCT_ROWS, write_for  # noqa: E402
from wire import agent_body  # noqa: E402


def test_the_sqlite_loop_writes_the_rows_sentra_stores_for_the_same_lines(tmp_path: Path) -> None:
    result = write_for(tmp_path / "loop.db", 0.2)
    # Whole 1,000-row transactions, seqs counted up from 1.
    assert result["rows"] >= 1000 and result["rows"] % 1000 == 0
    assert result["lines_per_s"] == result["rows_per_s"] > 0
    with sqlite3.connect(tmp_path / "loop.db") as conn:
        rows = conn.execute("SELECT seq, level, source, message, fields FROM lines ORDER BY seq").fetchall()
    assert [row[0] for row in rows] == list(range(1, result["rows"] + 1))
    body = agent_body(DISTINCT_ROWS)
    sentra = parse_body(body, "application/x-ndjson", max_line_size=256 * 1024, max_lines=10_000)
    stored = [(LEVELS[line.level], line.source, line.message, line.fields_json) for line in sentra]
    assert [row[1:] for row in rows[:DISTINCT_ROWS]] == stored
    # The lines differ from one another, and some are not INFO.
    assert len({row[3] for row in rows[:DISTINCT_ROWS]}) == DISTINCT_ROWS
    assert {row[1] for row in rows[:DISTINCT_ROWS]} == {20, 30, 40}


def test_the_report_gives_sentra_over_the_loop_and_the_single_line_ratio_to_the_peer() -> None:
    def runs(rates: list[float], lines: int) -> dict[str, Any]:
        measured = [{"lines_per_s": rate, "posts_per_s": rate / lines} for rate in rates]
        return {"runs": measured, "median": run.summarize(measured)}

    data = {
        "scenarios": {
            "ingest_1": {
                "title": "1a. one line",
                "servers": {"sentra": runs([12_000.0, 11_000.0, 13_000.0], 1), "peer": runs([24_000.0] * 3, 1)},
            },
            "ingest_1000": {
                "title": "1c. batches",
                "servers": {
                    "sentra": runs([100_000.0, 150_000.0, 120_000.0], 1000),
                    "sqlite_loop": runs([400_000.0, 300_000.0, 480_000.0], 1),
                },
            },
        },
        "machine": {"nproc": 2, "cpu_model": "cpu", "kernel": "k", "memory_gib": 1.0, "fd_limit": 1024},
        "versions": {},
        "date": "today",
        "command": "python bench/run.py",
        "runs": 3,
    }
    # The median of each run's ratio (0.25, 0.5, 0.25), not the ratio of the medians.
    assert report.ratios(data)["ingest_1000"]["sqlite_loop"]["lines_per_s"] == 0.25
    table = report.render(data, "/tmp/x.json").split("### 1c. batches")[1]
    assert "| figure | sentra | sqlite_loop | Sentra/sqlite_loop |" in table
    assert "| lines /s ↑ | 120,000 | 400,000 | 0.25× |" in table
    found = {name: (figure, met) for name, figure, met, _ in report.targets(data)}
    [(figure, met)] = [found[name] for name in found if name.startswith("Ingest, 1,000-line batches: lines/s ≥")]
    assert (figure, met) == ("0.25×", False)
    assert found["Ingest, single-line POSTs/s: Sentra/Starlette peer, same run"][0] == "0.50×"
