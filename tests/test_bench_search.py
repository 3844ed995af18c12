"""bench/search.py end to end at a tiny size: it builds, indexes, searches over HTTP and writes its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "search.py"

pytestmark = pytest.mark.slow  # builds a database and starts a server child


def run_bench(out: Path, keep: Path) -> dict[str, object]:
    """One tiny run of the search benchmark; its results file."""
    command = [sys.executable, str(SCRIPT), "--lines", "20000", "--agents", "20", "--queries", "3"]
    done = subprocess.run(
        [*command, "--keep", str(keep), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rare word" in done.stdout  # the table
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_search_bench_times_every_case_and_finds_what_it_should(tmp_path: Path) -> None:
    result = run_bench(tmp_path / "first.json", tmp_path / "db")
    assert (result["lines"], result["agents"], result["queries"]) == (20000, 20, 3)
    assert isinstance(result["index_build_s"], float) and result["index_build_s"] > 0
    cases = {case["case"]: case for case in result["cases"]}  # type: ignore[attr-defined]
    assert len(cases) == 9
    for name in ("rare word", "common word", "two-word phrase"):
        for suffix in ("", " level=ERROR", " label=team=t3"):
            case = cases[name + suffix]
            assert 0 < case["median_ms"] <= case["p99_ms"] < 5000
    # The rare word is in exactly ten lines; every one is found, and the filters keep some of them.
    assert cases["rare word"]["found"] == 10
    assert 0 < cases["rare word level=ERROR"]["found"] < 10
    assert 0 < cases["rare word label=team=t3"]["found"] < 10
    assert cases["common word"]["found"] == 100 and cases["two-word phrase"]["found"] == 100
    # A second run reuses the database and its index.
    again = run_bench(tmp_path / "again.json", tmp_path / "db")
    assert again["fill_s"] is None and again["index_build_s"] == 0.0
    assert {c["case"]: c["found"] for c in again["cases"]} == {n: c["found"] for n, c in cases.items()}  # type: ignore[attr-defined]
