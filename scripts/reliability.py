"""Run Sentra's reliability suites (tests/reliability) and print the figures docs/reliability.md reports.

    python scripts/reliability.py           # the short versions CI runs (about 2 minutes)
    python scripts/reliability.py --long    # 10-minute soak, 100 kills, 300 fuzz examples per operation…
    python scripts/reliability.py --only soak --soak-seconds 120

Each suite writes what it measured as JSON into --out (default: sentra-reliability in the temp folder); the
figures are printed as Markdown at the end and kept in <out>/figures.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(tempfile.gettempdir()) / "sentra-reliability"
SUITES = {
    "fuzz": "test_fuzz_api.py",
    "properties": "test_ingest_properties.py",
    "crash": "test_crash_recovery.py",
    "soak": "test_soak.py",
    "hostile": "test_hostile_clients.py",
}
LONG = {
    "SENTRA_FUZZ_RANDOM": "1",  # new examples each run, not the repeatable ones CI draws
    "SENTRA_FUZZ_EXAMPLES": "300",
    "SENTRA_PROPERTY_EXAMPLES": "1000",
    "SENTRA_KILLS": "100",
    "SENTRA_SOAK_SECONDS": "600",
}


def main() -> int:
    """Run the suites, then print their figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="the long versions (about 20 minutes)")
    parser.add_argument("--only", choices=sorted(SUITES), action="append", help="run only this suite (repeatable)")
    parser.add_argument("--soak-seconds", type=float, help="override the soak's duration")
    parser.add_argument("--kills", type=int, help="override the number of kill -9 cycles")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the figures go")
    args = parser.parse_args()

    env = {**os.environ, "SENTRA_RELIABILITY_OUT": str(args.out)}
    if args.long:
        env.update(LONG)
    if args.soak_seconds is not None:
        env["SENTRA_SOAK_SECONDS"] = str(args.soak_seconds)
    if args.kills is not None:
        env["SENTRA_KILLS"] = str(args.kills)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.json"):
        old.unlink()
    files = [str(ROOT / "tests" / "reliability" / SUITES[name]) for name in (args.only or SUITES)]
    # The per-test timeout of the normal suite is too short for the long versions.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=3600", *files]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env)
    figures = render(args.out)
    (args.out / "figures.md").write_text(figures)
    print()
    print(figures)
    return result.returncode


def load(out: Path, name: str) -> dict[str, Any]:
    """One suite's figures, or nothing if it did not run."""
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def render(out: Path) -> str:
    """The figures of every suite that ran, as Markdown."""
    parts: list[str] = []
    fuzz = load(out, "fuzz")
    if fuzz:
        parts += [
            "### API fuzzing",
            f"- examples per operation and mode: {fuzz.get('examples_per_operation')}",
            f"- requests with a valid token: {fuzz.get('valid_token_requests')} "
            f"(statuses {fuzz.get('valid_token_statuses')}), failures: {fuzz.get('valid_token_failures')}",
            f"- requests with invalid tokens ({', '.join(fuzz.get('invalid_token_kinds', []))}): "
            f"{fuzz.get('invalid_token_requests')} (statuses {fuzz.get('invalid_token_statuses')}), "
            f"failures: {fuzz.get('invalid_token_failures')}",
            "",
        ]
    props = load(out, "properties")
    if props:
        parts += [
            "### Ingest properties over HTTP",
            f"- examples per test: {props.get('http_examples')}; batches accepted: {props.get('accepted')}, "
            f"refused with a 4xx: {props.get('refused')}; lines read back exactly: {props.get('lines')}",
            "",
        ]
    crash = load(out, "crash")
    if crash:
        parts += [
            "### Crash recovery",
            f"- kill -9 cycles: {crash.get('kills')} ({crash.get('writers')} writers, {crash.get('agents')} agents, "
            f"{crash.get('seconds')} s)",
            f"- batches acknowledged: {crash.get('batches_acknowledged')}; left unanswered by a kill and sent again "
            f"with their Idempotency-Key: {crash.get('batches_interrupted_and_retried')} times, of which "
            f"{crash.get('retries_answered_from_idempotency_key')} had been committed and were answered from the key",
            f"- lines verified exactly once, gap-free, at their acknowledged seqs: {crash.get('lines_verified')}; "
            "PRAGMA integrity_check: ok",
            "",
        ]
    disk = load(out, "disk_full")
    if disk:
        parts += ["### Full disk"]
        for name, figures in sorted(disk.items()):
            parts.append(
                f"- {name}: {figures.get('lines_before_full')} lines stored, then "
                f"{figures.get('refused_status')} `{figures.get('refused_code')}`; the same agent took the next "
                "batch once the space returned"
            )
        parts.append("")
    soak = load(out, "soak")
    if soak:
        rss = soak.get("rss_mib", {})
        latency = soak.get("delivery_latency_ms", {})
        parts += [
            "### Soak",
            f"- {soak.get('seconds')} s, {soak.get('subscribers_at_once')} subscribers at once "
            f"(peak {soak.get('peak_open_streams')} open streams), {soak.get('streams_opened')} streams opened "
            f"and dropped, {soak.get('events_received')} events received, statuses {soak.get('statuses')}, "
            f"connect errors {soak.get('connect_errors')}",
            f"- RSS: {rss.get('before')} MiB before the load, {rss.get('after_warm_up')} MiB after warm-up, "
            f"{rss.get('end')} MiB at the end (peak {rss.get('peak_after_warm_up')} MiB)",
            f"- descriptors: {soak.get('fds', {}).get('before')} before, {soak.get('fds', {}).get('after')} after",
            f"- delivery latency of probe lines ({latency.get('samples')}): p50 {latency.get('p50')} ms, "
            f"p99 {latency.get('p99')} ms, max {latency.get('max')} ms",
            "",
            "| seconds | RSS MiB | open descriptors |",
            "|---:|---:|---:|",
        ]
        curve = soak.get("rss_curve_mib", [])
        rows = sorted({*range(0, len(curve), max(1, -(-len(curve) // 12))), len(curve) - 1} - {-1})
        parts += [f"| {curve[i][0]} | {curve[i][1]} | {curve[i][2]} |" for i in rows]
        parts.append("")
    hostile = load(out, "hostile")
    if hostile:
        parts += ["### Hostile clients", f"- cases tried: {hostile.get('total')}"]
        parts += [f"  - {kind}: {count}" for kind, count in hostile.get("cases_tried", {}).items()]
        parts.append("")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
