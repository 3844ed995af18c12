"""Run Sentra's benchmark: Sentra, nginx+nchan and a Starlette peer, side by side on this machine.

    python bench/run.py [--quick] [--runs 3] [--only fanout_max,paced] [--profile]

Installs what is missing (Debian: nginx-light, libnginx-mod-nchan, wrk, gcc, zlib1g-dev; pip: bench/requirements.txt),
starts the three servers on 127.0.0.1 for each run, runs every scenario against every server that
supports it (and, beside the 1,000-line ingest batches, a plain Python loop writing the same rows to SQLite on the
same disk: sqlite_loop.py), and writes the medians of the runs to bench/results/<date>-<machine>.json and the tables to
docs/performance.md. A full run takes about 25 minutes, --quick about 4.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import procstat
import report
from servers import STARTERS, Server
from subscribers import raise_fd_limit, use_uvloop
from sustained import at_rates, highest_sustained
from wire import Target

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEBIAN_PACKAGES = ("nginx-light", "libnginx-mod-nchan", "wrk", "gcc", "zlib1g-dev")
PIP_MODULES = ("starlette", "sse_starlette", "uvicorn", "uvloop", "httptools")
ALL = ("sentra", "nchan", "peer")
REFERENCE = "sqlite_loop"  # not a server: the plain Python loop writing to SQLite (sqlite_loop.py)
TIME_BUDGET = {False: 30 * 60, True: 6 * 60}
SCENARIO_TIMEOUT = 180.0


@dataclass
class Sizes:
    """How long and how big each scenario is; --quick shrinks them."""

    window: float  # seconds of publishing at the highest rate
    step: float  # seconds of each paced step when looking for the highest sustained rate
    paced: float  # seconds of paced publishing
    ingest: float  # seconds of wrk
    idle: int  # idle connections
    replay: int  # stored lines a late joiner replays


FULL = Sizes(window=5.0, step=4.0, paced=8.0, ingest=5.0, idle=10_000, replay=100_000)
QUICK = Sizes(window=2.0, step=1.5, paced=3.0, ingest=2.0, idle=2_000, replay=100_000)

Runner = Callable[[Target, Server, str, Sizes], Awaitable[dict[str, Any]]]
# Runs one server at other servers' rates once all have run the scenario: the extra steps to add to its result.
Comparer = Callable[[Target, Server, str, Sizes, list[float]], Awaitable[list[dict[str, Any]]]]


@dataclass
class Scenario:
    """One measured situation, for the servers that support it."""

    name: str
    title: str
    servers: tuple[str, ...]
    run: Runner
    compare: Comparer | None = None
    # Also the plain Python loop writing the same rows to SQLite (sqlite_loop.py), in the same run, for a ratio.
    reference: bool = False


def _channels(tag: str, count: int) -> list[str]:
    return [f"{tag}_{i}" for i in range(count)]


def _ingest(lines: int, *, otlp: bool = False) -> Runner:
    async def run(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
        return await load.ingest(
            target,
            [server.pid],
            channel=f"{tag}_0",
            lines_per_post=lines,
            connections=8,
            duration=size.ingest,
            otlp=otlp,
        )

    return run


async def _fanout_max(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await load.fanout(
        target, [server.pid], channels=_channels(tag, 1), subscribers=100, publishers=8, duration=size.window
    )


async def _fanout_sustained(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await highest_sustained(
        target, [server.pid], tag=tag, subscribers=100, publishers=16, window=size.step, probe=size.step / 2
    )


async def _fanout_at_rates(
    target: Target, server: Server, tag: str, size: Sizes, rates: list[float]
) -> list[dict[str, Any]]:
    return await at_rates(target, [server.pid], tag=tag, subscribers=100, publishers=16, window=size.step, rates=rates)


async def _fanout_batch(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await load.fanout(
        target,
        [server.pid],
        channels=_channels(tag, 1),
        subscribers=100,
        publishers=4,
        batch=100,
        duration=size.window,
    )


async def _paced(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await load.fanout(
        target,
        [server.pid],
        channels=_channels(tag, 1),
        subscribers=100,
        publishers=16,
        rate=1000,
        duration=size.paced,
    )


async def _many_max(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await load.fanout(
        target,
        [server.pid],
        channels=_channels(tag, 100),
        subscribers=10,
        publishers=1,
        duration=size.window,
        procs=2,
    )


async def _many_paced(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await load.fanout(
        target,
        [server.pid],
        channels=_channels(tag, 100),
        subscribers=10,
        publishers=2,
        rate=1000,
        duration=size.paced,
        procs=2,
    )


async def _idle(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    return await load.idle(target, [server.pid], connections=size.idle, channels=_channels(tag, 20), procs=2)


async def _replay(target: Target, server: Server, tag: str, size: Sizes) -> dict[str, Any]:
    channel = f"{tag}_0"
    fill_seconds = await load.fill(target, channel, size.replay)
    result = await load.replay(target, [server.pid], channel=channel, lines=size.replay)
    result["fill_seconds"] = round(fill_seconds, 3)
    result.update({f"history_{k}": v for k, v in (await load.history_page(target, channel=channel)).items()})
    return result


SCENARIOS = (
    Scenario("idle", "5. 10,000 idle SSE connections", ALL, _idle),
    Scenario("ingest_1", "1a. Ingest, one line per POST (wrk, 8 keep-alive connections)", ALL, _ingest(1)),
    Scenario(
        "ingest_100", "1b. Ingest, 100 NDJSON lines per POST (wrk, 8 connections)", ("sentra", "peer"), _ingest(100)
    ),
    Scenario(
        "ingest_1000",
        "1c. Ingest, 1,000 NDJSON lines per POST (wrk, 8 connections); a Python loop writing the rows to SQLite",
        ("sentra", "peer"),
        _ingest(1000),
        reference=True,
    ),
    Scenario(
        "ingest_otlp_1000",
        "1d. Ingest, OTLP/HTTP protobuf, 1,000 records per POST (wrk, 8 connections)",
        ("sentra",),
        _ingest(1000, otlp=True),
    ),
    Scenario(
        "fanout_max",
        "2. Fan-out 1 agent x 100 subscribers, one line per POST, publishers back to back",
        ALL,
        _fanout_max,
    ),
    Scenario(
        "fanout_sustained",
        "2a. Fan-out 1 agent x 100 subscribers, one line per POST, highest sustained rate (paced, stepped up)",
        ALL,
        _fanout_sustained,
        _fanout_at_rates,
    ),
    Scenario(
        "fanout_batch", "2b. Fan-out 1 x 100, 100 lines per POST, highest rate", ("sentra", "peer"), _fanout_batch
    ),
    Scenario("paced", "3. Paced 1 x 100 at 1,000 lines/s, one line per POST", ALL, _paced),
    Scenario("many_max", "4a. 100 agents x 10 subscribers, one line per POST, highest rate", ALL, _many_max),
    Scenario("many_paced", "4b. 100 agents x 10 subscribers, paced at 1,000 lines/s in all", ALL, _many_paced),
    Scenario("replay", "6. Late joiner replays 100,000 stored lines; a 10,000-line history page", ("sentra",), _replay),
)


async def sqlite_reference(workdir: Path, seconds: float) -> dict[str, Any]:
    """sqlite_loop.py for `seconds` on a new database file in `workdir` (beside the servers', on the same disk)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, str(BENCH / "sqlite_loop.py"), "--db", str(workdir / "loop.db"), "--seconds", str(seconds)]
    process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds + 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {"error": f"sqlite_loop.py took more than {seconds + 60:.0f} s"}
    finally:
        # Hundreds of MB a run: gone before the next scenario writes to the same disk.
        for path in workdir.glob("loop.db*"):
            path.unlink()
    if process.returncode != 0:
        return {"error": f"sqlite_loop.py failed: {err.decode()[-400:]}"}
    result: dict[str, Any] = json.loads(out)
    return result


def ensure_installed() -> None:
    """Install the Debian packages and Python modules the benchmark needs, if missing."""
    missing = [
        pkg
        for pkg, present in (
            ("nginx-light", shutil.which("nginx")),
            ("libnginx-mod-nchan", Path("/usr/lib/nginx/modules/ngx_nchan_module.so").exists()),
            ("wrk", shutil.which("wrk")),
            ("gcc", shutil.which("cc")),
            ("zlib1g-dev", Path("/usr/include/zlib.h").exists()),  # the C reader inflates gzip streams
        )
        if not present
    ]
    if missing:
        print(f"installing Debian packages: {' '.join(missing)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    if any(importlib.util.find_spec(name) is None for name in PIP_MODULES):
        print("installing Python packages from bench/requirements.txt", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", str(BENCH / "requirements.txt")], check=True
        )


def _output(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def sentra_commit() -> str:
    """The commit measured, marked -modified when Sentra's own files differ from it."""
    commit = _output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    changed = _output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "sentra", "server.py", "pyproject.toml"])
    return commit + ("-modified" if changed else "")


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, kernel, memory."""
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "fd_limit": procstat_fd_limit(),
    }


def procstat_fd_limit() -> int:
    """The open-file limit the servers and the load tool got."""
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def versions() -> dict[str, str]:
    """Versions of everything measured and of the load tool's pieces."""
    from importlib.metadata import PackageNotFoundError, version

    sys.path.insert(0, str(ROOT))
    from sentra import __version__

    found: dict[str, str] = {"python": platform.python_version(), "sentra": __version__}
    for dist in ("tornado", "aiosqlite", "starlette", "sse-starlette", "uvicorn", "uvloop", "httptools"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "missing"
    import sqlite3

    found["sqlite"] = sqlite3.sqlite_version
    found["sentra_commit"] = sentra_commit()
    found["nginx"] = _output(["nginx", "-v"]).replace("nginx version: ", "")
    for pkg in ("libnginx-mod-nchan", "wrk"):
        found[pkg] = _output(["dpkg-query", "-W", "-f", "${Version}", pkg])
    return found


def background_busy(seconds: float = 1.0) -> float:
    """The machine's busy share while the benchmark itself does nothing (other work on the machine)."""
    busy0, total0 = procstat.machine_ticks()
    time.sleep(seconds)
    busy1, total1 = procstat.machine_ticks()
    return round((busy1 - busy0) / max(total1 - total0, 1), 3)


def wait_for_quiet(limit: float, most: float, *, quiet: bool = False) -> float:
    """Wait up to `most` seconds for other work on the machine to fall below `limit`; returns the last reading."""
    deadline = time.monotonic() + most
    busy = background_busy(0.5)
    while busy > limit and time.monotonic() < deadline:
        if not quiet:
            print(f"  machine {busy:.0%} busy with other work; waiting for it to settle", flush=True)
        busy = background_busy(min(5.0, max(0.5, deadline - time.monotonic())))
    return busy


# A server using less of a core than this between scenarios has finished its background work.
IDLE_SERVER = 0.05


def wait_for_idle_servers(servers: list[Server], most: float = 60.0) -> float:
    """Wait up to `most` seconds until the servers use less than IDLE_SERVER of a core: Sentra's search index may
    still be indexing the lines of the scenario before, and would take CPU from the next one. The seconds waited."""
    began = time.monotonic()
    pids = [pid for server in servers for pid in procstat.tree(server.pid)]
    while time.monotonic() - began < most:
        used = procstat.cpu_seconds(pids)
        time.sleep(0.5)
        if procstat.cpu_seconds(pids) - used < IDLE_SERVER * 0.5:
            break
    return time.monotonic() - began


async def compare_at_rates(
    scenario: Scenario,
    servers: dict[str, Server],
    results: dict[str, dict[str, Any]],
    tag: str,
    size: Sizes,
    gzip: bool = False,
) -> None:
    """Run each server once at the other servers' highest sustained rates (of this run) that it did not try,
    adding those steps to its result: the servers then compare at the same rates in every run."""
    assert scenario.compare is not None
    best = {kind: result.get("sustained_rate") or 0.0 for kind, result in results.items() if "error" not in result}
    for kind, result in results.items():
        if kind not in best:
            continue
        tried = {step["rate"] for step in result.get("steps", [])}
        rates = sorted({rate for other, rate in best.items() if other != kind and rate and rate not in tried})
        if not rates:
            continue
        server = servers[kind]
        target = Target(kind, server.port, secret=server.secret, gzip=gzip)
        try:
            steps = await asyncio.wait_for(scenario.compare(target, server, tag, size, rates), SCENARIO_TIMEOUT)
        except Exception as exc:  # the ladder's figures stand without the comparison
            print(f"  {scenario.name:<12} {kind:<7} at the others' rates failed: {exc}"[:300], flush=True)
            continue
        result["steps"].extend(steps)
        result["lost_any_step"] += sum((step.get("lost") or 0) + (step.get("cut") or 0) for step in steps)
        done = ", ".join(_step_words(step) for step in steps)
        print(f"  {scenario.name:<12} {kind:<7} at the others' rates: {done}", flush=True)


def _step_words(step: dict[str, Any]) -> str:
    verdict = "" if step["sustained"] else f" (not sustained: {step['why']})"
    return f"{step['rate']:,.0f}/s p99 {step.get('p99_ms')} ms{verdict}"


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric figure across runs; the bottleneck seen most often; lower bound if any run was."""
    good = [run for run in runs if "error" not in run]
    if not good:
        return {"error": runs[-1]["error"]}
    runs = good
    median: dict[str, Any] = {"runs_ok": len(good)}
    for key in runs[0]:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            median[key] = round(statistics.median(values), 3)
        elif key == "bottleneck":
            median[key] = Counter(values).most_common(1)[0][0]
        elif key == "lower_bound":
            median[key] = any(values)
    return median


async def run_all(args: argparse.Namespace, workroot: Path) -> dict[str, Any]:
    """Every run: start the servers, run the scenarios, stop the servers."""
    size = QUICK if args.quick else FULL
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    kinds = [k for k in ALL if k in args.servers]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {} for s in chosen}
    started = time.monotonic()
    backgrounds: list[float] = []
    commits: list[str] = []
    for run in range(args.runs):
        if time.monotonic() - started > TIME_BUDGET[args.quick]:
            print(f"time budget spent: stopping after {run} run(s)", flush=True)
            break
        backgrounds.append(wait_for_quiet(args.quiet, args.wait))
        commits.append(sentra_commit())
        print(f"run {run + 1}/{args.runs} of {commits[-1]} (machine busy before it: {backgrounds[-1]:.0%})", flush=True)
        servers: dict[str, Server] = {}
        try:
            for kind in kinds:
                starter = STARTERS[kind]
                workdir = workroot / f"run{run}" / kind
                servers[kind] = starter(workdir, args.sentra_set) if kind == "sentra" else starter(workdir)  # type: ignore[call-arg]
            for scenario in chosen:
                # Other work on a shared machine skews a figure: give it a few seconds to pass.
                waited = wait_for_idle_servers(list(servers.values()))
                if waited > 2:
                    print(f"  (waited {waited:.0f} s for the servers to finish background work)", flush=True)
                wait_for_quiet(args.quiet, min(5.0, args.wait / 10), quiet=True)
                for kind in kinds:
                    if kind not in scenario.servers:
                        continue
                    server = servers[kind]
                    target = Target(kind, server.port, secret=server.secret, gzip=args.gzip)
                    began = time.monotonic()
                    try:
                        result = await asyncio.wait_for(
                            scenario.run(target, server, f"r{run}{scenario.name}", size), SCENARIO_TIMEOUT
                        )
                    except Exception as exc:  # one failed measurement must not lose the others
                        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                    result["wall_seconds"] = round(time.monotonic() - began, 1)
                    results[scenario.name].setdefault(kind, []).append(result)
                    print(f"  {scenario.name:<12} {kind:<7} {report.one_line(scenario.name, result)}", flush=True)
                    if server.process.poll() is not None:
                        raise RuntimeError(f"{kind} exited during {scenario.name}:\n{server.tail()}")
                if scenario.reference:
                    result = await sqlite_reference(workroot / f"run{run}" / REFERENCE, size.ingest)
                    results[scenario.name].setdefault(REFERENCE, []).append(result)
                    print(f"  {scenario.name:<12} {REFERENCE} {report.one_line(scenario.name, result)}", flush=True)
                if scenario.compare is not None:
                    this_run = {kind: runs[-1] for kind, runs in results[scenario.name].items() if len(runs) > run}
                    await compare_at_rates(scenario, servers, this_run, f"r{run}{scenario.name}", size, args.gzip)
        finally:
            for server in servers.values():
                server.stop()
    return {
        "scenarios": {
            s.name: {
                "title": s.title,
                "servers": {kind: {"median": summarize(runs), "runs": runs} for kind, runs in results[s.name].items()},
            }
            for s in chosen
        },
        "background_busy": backgrounds,
        "run_commits": commits,
        "seconds": round(time.monotonic() - started, 1),
    }


async def profile_sentra(workroot: Path, out: Path, stem: str, size: Sizes, settings: dict[str, str]) -> dict[str, Any]:
    """py-spy flame graphs (SVG) and collapsed stacks of Sentra in the scenarios that stress it."""
    if shutil.which("py-spy") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    server = STARTERS["sentra"](workroot / "profile", settings)  # type: ignore[call-arg]
    target = Target("sentra", server.port, secret=server.secret)
    profiles: dict[str, Any] = {}
    try:
        for name in ("ingest_1", "ingest_1000", "ingest_otlp_1000", "fanout_max", "paced", "replay"):
            scenario = next(s for s in SCENARIOS if s.name == name)
            spies = []
            # The flame graph is kept next to the results; the collapsed stacks only feed the summary.
            for fmt, path in (
                ("flamegraph", out / f"{stem}-profile-{name}.svg"),
                ("raw", workroot / f"profile-{name}.txt"),
            ):
                args = ["py-spy", "record", "--pid", str(server.pid), "--rate", "200", "--nonblocking"]
                args += ["--format", fmt, "-o", str(path)]
                spies.append((subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path))
            await asyncio.sleep(1.0)
            result = await scenario.run(target, server, f"prof{name}", size)
            for spy, _ in spies:
                spy.send_signal(2)
            for spy, _ in spies:
                spy.wait(30)
            collapsed = spies[1][1]
            profiles[name] = {
                "figure": report.one_line(name, result),
                "flamegraph": spies[0][1].name,
                "top": report.top_functions(collapsed.read_text()) if collapsed.exists() else [],
            }
            print(f"  profiled {name}: {spies[0][1].name}", flush=True)
    finally:
        server.stop()
    return profiles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, 2,000 idle connections, one run")
    parser.add_argument("--runs", type=int, default=None, help="runs to take the median of (default 3; --quick 1)")
    parser.add_argument("--only", type=lambda text: text.split(","), default=[], help="scenario names, comma-separated")
    parser.add_argument("--servers", type=lambda text: text.split(","), default=list(ALL), help="sentra,nchan,peer")
    parser.add_argument("--sentra-set", action="append", default=[], metavar="NAME=TOML", help="extra Sentra setting")
    parser.add_argument("--gzip", action="store_true", help="subscribers ask for gzip (Accept-Encoding: gzip)")
    parser.add_argument("--profile", action="store_true", help="also record py-spy flame graphs of Sentra")
    parser.add_argument("--no-install", action="store_true", help="do not install missing packages")
    parser.add_argument("--quiet", type=float, default=0.10, help="busy share of other work to wait for (0.10)")
    parser.add_argument("--wait", type=float, default=None, help="most seconds to wait per run (60, --quick 20)")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="where the JSON goes")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md", help="Markdown to update")
    parser.add_argument("--no-doc", action="store_true", help="do not touch the Markdown report")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.wait = args.wait if args.wait is not None else (20 if args.quick else 60)
    args.sentra_set = dict(item.split("=", 1) for item in args.sentra_set)
    unknown = set(args.only) - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {[s.name for s in SCENARIOS]}")
    if not args.no_install:
        ensure_installed()
    raise_fd_limit()
    use_uvloop()
    command = "python bench/run.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    machine = machine_info()
    now = datetime.now(UTC)
    stem = f"{now:%Y-%m-%d}-{machine['nproc']}core-{report.slug(machine['cpu_model'])}"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentra-bench-") as tmp:
        data = asyncio.run(run_all(args, Path(tmp)))
        if args.profile:
            size = QUICK if args.quick else FULL
            data["profile"] = asyncio.run(profile_sentra(Path(tmp), args.out, stem, size, args.sentra_set))
    data.update(
        date=now.isoformat(timespec="seconds"),
        command=command,
        runs=args.runs,
        quick=args.quick,
        machine=machine,
        versions=versions(),
        sentra_settings=args.sentra_set,
        subscribers_gzip=args.gzip,
    )
    data["ratios"] = report.ratios(data)
    data["beside"] = report.beside_ratios(data)
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
    if not args.no_doc:
        report.update_doc(args.doc, data, path)
        print(f"report: {args.doc}", flush=True)
    print(report.targets_text(data), flush=True)
    if beside := report.beside_text(data):
        print(beside, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
