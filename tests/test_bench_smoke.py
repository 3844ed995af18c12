"""The benchmark's load tool still counts every line: a tiny run against a real Sentra, no nginx needed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET
from processes import ServerProcess, start_process, write_config

LOAD_TOOL = Path(__file__).resolve().parent.parent / "bench" / "load.py"


@pytest.fixture
def sentra(tmp_path: Path) -> Iterator[ServerProcess]:
    """`python server.py` as the benchmark starts it: SQLite on disk, auth on, a known secret."""
    server = start_process(tmp_path / "bench.db", config=write_config(tmp_path))
    yield server
    server.terminate()


def load_tool(server: ServerProcess, *args: str) -> dict[str, Any]:
    """Run bench/load.py against the server and return its JSON report."""
    command = [sys.executable, str(LOAD_TOOL), *args, "--kind", "sentra", "--port", str(server.port)]
    command += ["--secret", SECRET, "--pid", str(server.process.pid)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_paced_fanout_counts_every_line_in_order(sentra: ServerProcess) -> None:
    result = load_tool(
        sentra, "fanout", "--channels", "2", "--subscribers", "3", "--rate", "400", "--duration", "1", "--strict"
    )
    assert result["opened"] == 6
    # A slow machine may fall behind the schedule; whatever was published must all arrive.
    assert 0 < result["published"] <= 400
    # Every subscriber of a channel sees every line published to it, once, in order.
    assert result["delivered"] == result["expected"] == 3 * result["published"]
    assert (result["lost"], result["gaps"], result["disorder"], result["seq_errors"], result["cut"]) == (0, 0, 0, 0, 0)
    # Counting markers agrees with parsing each event as JSON and counting its `lines`.
    assert result["strict_count"] == result["delivered"]
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]


def test_batched_fanout_counts_lines_inside_coalesced_events(sentra: ServerProcess) -> None:
    result = load_tool(
        sentra, "fanout", "--subscribers", "2", "--publishers", "2", "--batch", "50", "--duration", "0.5", "--strict"
    )
    assert result["published"] > 0 and result["published"] % 50 == 0
    assert result["delivered"] == result["strict_count"] == 2 * result["published"]
    assert (result["lost"], result["gaps"], result["disorder"], result["seq_errors"]) == (0, 0, 0, 0)
    # Several lines travel in one event, and each is still counted.
    assert result["lines_per_event"] > 1


def test_late_joiner_replay_is_counted_to_the_last_line(sentra: ServerProcess) -> None:
    result = load_tool(sentra, "replay", "--lines", "3000")
    assert result["delivered"] == 3000
    assert (result["lost"], result["seq_errors"]) == (0, 0)
