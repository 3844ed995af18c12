"""What the reliability suites share: a server child's memory and descriptors, knobs and figures.

Every suite has a short default that CI runs and an environment knob for the long version; each records the
figures it measured (requests, kills, RSS samples…) as JSON in $SENTRA_RELIABILITY_OUT when that is set, which
scripts/reliability.py reads to print the figures of docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def knob(name: str, default: float) -> float:
    """A number from the environment (SENTRA_SOAK_SECONDS…), else the short default."""
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def rss_bytes(pid: int) -> int:
    """The resident memory of a process, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors a process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def record_figures(suite: str, figures: dict[str, Any]) -> None:
    """Keep what a suite measured, for docs/reliability.md (only when $SENTRA_RELIABILITY_OUT names a folder)."""
    out = os.environ.get("SENTRA_RELIABILITY_OUT")
    if not out:
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{suite}.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update(figures)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
