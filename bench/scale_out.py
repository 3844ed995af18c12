"""Sentra on several processes: fan-out with one process vs two on one PostgreSQL and one Redis.

    python bench/scale_out.py            # 3 runs, medians; ~4 minutes; writes bench/results/*-scale-out.json
    python bench/scale_out.py --runs 1   # a quick look

Scenarios (1 agent, 100 subscribers, one line per POST, 8 publishing connections), each measured:
- sqlite-1: one process, SQLite (the default deployment), as the reference of the same run;
- pg-1: one process on PostgreSQL + Redis, publishers and all subscribers on it;
- pg-2: two processes on the same PostgreSQL + Redis, publishers on the first, subscribers split 50/50,
  so half of every line's deliveries cross Redis to the second process.
Max rate (closed loop, 5 s) and paced (500 lines/s): deliveries/s, p50/p99 latency, losses, server CPU.
PostgreSQL runs with synchronous_commit=off (as durable as SQLite's WAL with synchronous=NORMAL: a crash of
the process loses nothing, a power cut may lose the last moment); Redis without persistence. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import fanout
from servers import Server, free_port, start_sentra
from wire import Target

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
FIGURES = (
    "deliveries_per_s",
    "publish_rate",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "lost",
    "cut",
    "server_cores",
    "load_cores",
    "machine_busy",
)


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port; yields the URL of a fresh database."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise SystemExit("PostgreSQL is missing: apt-get install postgresql")
    bin_dir = Path(found[-1]).parent
    # Its own directory straight under /tmp: the postgres user cannot enter the benchmark's private one.
    root = Path(tempfile.mkdtemp(prefix="sentra-bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        pwd.getpwnam("postgres")
        shutil.chown(root, "postgres", "postgres")
        prefix = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    data, port = root / "data", free_port()
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--locale=C"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c synchronous_commit=off -c max_connections=100"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-l", str(root / "log"), "-o", options, "-w", "-t", "30", "start"], check=True, timeout=40)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=40)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    """A redis-server without persistence on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: apt-get install redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(10)


def _settings(pg_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    return {"storage.url": json.dumps(pg_url), "bus.url": json.dumps(redis_url), "bus.prefix": json.dumps(prefix)}


async def _measure(publish: Server, watch: list[Server], run: int) -> dict[str, dict[str, Any]]:
    secret = publish.secret
    target = Target("sentra", publish.port, secret=secret)
    watchers = [Target("sentra", server.port, secret=secret) for server in watch]
    pids = [publish.pid, *(server.pid for server in watch if server is not publish)]
    out: dict[str, dict[str, Any]] = {}
    for name, rate in (("max", None), ("paced_500", 500.0)):
        channel = f"scale-{run}-{name}-{time.monotonic_ns()}"
        out[name] = await fanout(
            target,
            pids,
            channels=[channel],
            subscribers=100,
            publishers=8,
            duration=5.0,
            rate=rate,
            watch=watchers,
        )
    return out


async def one_run(run: int, workdir: Path) -> dict[str, Any]:
    """The three deployments, fresh servers and databases, measured one after the other."""
    figures: dict[str, Any] = {}
    sqlite = start_sentra(workdir / f"sqlite-{run}")
    try:
        figures["sqlite-1"] = await _measure(sqlite, [sqlite], run)
    finally:
        sqlite.stop()
    with _engines(workdir, run) as (pg_url, redis_url):
        single = start_sentra(workdir / f"pg1-{run}", _settings(pg_url, redis_url, f"one{run}"))
        try:
            figures["pg-1"] = await _measure(single, [single], run)
        finally:
            single.stop()
        settings = _settings(pg_url, redis_url, f"two{run}")
        first = start_sentra(workdir / f"pg2a-{run}", settings)
        second = start_sentra(workdir / f"pg2b-{run}", settings, secret=first.secret)
        try:
            figures["pg-2"] = await _measure(first, [first, second], run)
        finally:
            first.stop()
            second.stop()
    return figures


@contextmanager
def _engines(workdir: Path, run: int) -> Iterator[tuple[str, str]]:
    engines = workdir / f"engines-{run}"
    engines.mkdir()
    with postgres() as pg_url, redis(engines) as redis_url:
        yield pg_url, redis_url


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per deployment and scenario, the median of each figure over the runs."""
    out: dict[str, Any] = {}
    for deployment in runs[0]:
        for scenario in runs[0][deployment]:
            values = [run[deployment][scenario] for run in runs]
            figures: dict[str, Any] = {
                key: round(statistics.median(v[key] for v in values if key in v), 3)
                for key in FIGURES
                if all(key in v for v in values)
            }
            figures["bottleneck"] = Counter(v.get("bottleneck", "?") for v in values).most_common(1)[0][0]
            out.setdefault(deployment, {})[scenario] = figures
    return out


def table(result: dict[str, Any]) -> str:
    """The Markdown rows for docs/performance.md."""
    rows = [
        "| deployment | max rate: deliveries/s | p99 | server cores | load tool cores | machine busy | bottleneck "
        "| paced 500/s: held | p50 | p99 | lost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "sqlite-1": "1 process, SQLite (reference)",
        "pg-1": "1 process, PostgreSQL + Redis",
        "pg-2": "2 processes, PostgreSQL + Redis, watchers split 50/50",
    }
    for key, label in names.items():
        m, p = result["medians"][key]["max"], result["medians"][key]["paced_500"]
        rows.append(
            f"| {label} | {m['deliveries_per_s']:,.0f} | {m['p99_ms']:.1f} ms | {m['server_cores']:.2f} "
            f"| {m['load_cores']:.2f} | {m['machine_busy']:.0%} | {m['bottleneck']} | {p['publish_rate']:,.0f}/s "
            f"| {p['p50_ms']:.1f} ms | {p['p99_ms']:.1f} ms | {int(m['lost'] + p['lost'])} |"
        )
    one, two = result["medians"]["pg-1"]["max"], result["medians"]["pg-2"]["max"]
    ratio = two["deliveries_per_s"] / one["deliveries_per_s"] if one["deliveries_per_s"] else 0.0
    rows.append("")
    rows.append(f"Two processes deliver **{ratio:.2f}×** what one process on the same engines delivers (max rate).")
    return "\n".join(rows)


def update_doc(result: dict[str, Any], path: Path) -> None:
    """Replace the scale-out section of docs/performance.md."""
    start, end = "<!-- scale:start -->", "<!-- scale:end -->"
    text = DOC.read_text()
    body = (
        f"Generated by `python bench/scale_out.py` on {result['when']} ({result['runs']} run(s), medians; raw "
        f"figures in [`bench/results/{path.name}`](../bench/results/{path.name})). Machine: {result['machine']}.\n\n"
        + table(result)
    )
    if start in text:
        text = text[: text.index(start) + len(start)] + "\n" + body + "\n" + text[text.index(end) :]
    else:
        text += f"\n## Several processes (PostgreSQL + Redis)\n\n{start}\n{body}\n{end}\n"
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="sentra-scale-") as tmp:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            runs.append(asyncio.run(one_run(run, Path(tmp))))
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": args.runs,
        "machine": f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}",
        "medians": medians(runs),
        "raw": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{time.strftime('%Y-%m-%d')}-scale-out.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    if not args.no_doc:
        update_doc(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
