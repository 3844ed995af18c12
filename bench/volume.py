"""The volume chart's endpoint on a run of 1,000,000 lines, and what keeping the run summary costs ingest.

One command (from the repository root):

    python bench/volume.py [--lines 1000000] [--queries 20]

1. Starts the real server (bench/servers.py) with its default config and sends it `--lines` lines of one agent as
   1000-line NDJSON POSTs on one connection, a line per second of `ts` (so the run spans 11.6 days and the volume
   index holds a row per second and level: its largest shape for that many lines), a tenth of them WARNING and a
   hundredth ERROR.
2. Times `--queries` GET /api/agents/{id}/volume requests (one keep-alive connection) for: the whole run in 60
   buckets (the default) and in 500, one hour of it in 500 buckets (bucket width 7.2 s: the per-second index) and
   one day in 60; checks that the whole run's buckets add up to every line and that the levels' sums match the
   agent's level_counts; writes the median and p99 (nearest rank) to bench/results/volume-<lines>.json.

    python bench/volume.py --wrk TREE [--seconds 10]

measures ingest instead: the server of source tree TREE (a checkout: compare one without the run summary against
one with it) takes 1000-line NDJSON POSTs from wrk (4 connections) for `--seconds`, after a warm-up; prints the
POSTs and lines per second and wrk's latency percentiles.

    python bench/volume.py --batch-cost

times, in this process, what keeping the summary adds to one group commit of 1,000 lines on SQLite (its
tally in Python, and its UPSERTs of the summary and volume rows in the writer's transaction): the work itself,
without the noise of a server sharing the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Server, _spawn, free_port, start_sentra

RESULTS = Path(__file__).resolve().parent / "results"
OWNER = "bench"
AGENT = "long-run"
T0 = 1_790_000_000
BATCH = 1000
WRK_LUA = """
wrk.method = "POST"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  io.write(string.format('JSON {{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, summary.errors.status + summary.errors.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""


def level_of(n: int) -> str:
    """ERROR every 100th line, WARNING every 10th, else INFO."""
    return "ERROR" if n % 100 == 0 else "WARNING" if n % 10 == 0 else "INFO"


def ndjson(start: int, count: int, ts: float | None = None) -> bytes:
    """Lines start..start+count as NDJSON, line n at T0 + n seconds (or all at `ts`)."""
    rows = (
        json.dumps({"ts": T0 + n if ts is None else ts, "level": level_of(n), "message": f"step {n} done", "i": n})
        for n in range(start, start + count)
    )
    return ("\n".join(rows) + "\n").encode()


class Client:
    """One keep-alive HTTP connection to the server, as the bench's user."""

    def __init__(self, server: Server) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.auth = {"Authorization": f"Bearer {jwt.encode({'sub': OWNER}, server.secret, algorithm='HS256')}"}

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> Any:
        headers = {**self.auth, **({"Content-Type": ctype} if ctype else {})}
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)


def fill(client: Client, lines: int) -> float:
    """POST the run's lines; the seconds it took."""
    started = time.monotonic()
    for start in range(0, lines, BATCH):
        client.call(
            "POST", f"/api/agents/{AGENT}/logs", ndjson(start, min(BATCH, lines - start)), "application/x-ndjson"
        )
    return time.monotonic() - started


def timed(client: Client, path: str, queries: int) -> tuple[dict[str, float], Any]:
    """Median and p99 (nearest rank) in ms of `queries` GETs of `path`, and the last answer."""
    times = []
    answer = None
    for _ in range(queries):
        started = time.perf_counter()
        answer = client.call("GET", path)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p99 = times[max(0, math.ceil(0.99 * len(times)) - 1)]
    return {"median_ms": round(statistics.median(times), 2), "p99_ms": round(p99, 2)}, answer


def check(answer: dict[str, Any], agent: dict[str, Any], lines: int) -> None:
    """The whole run's buckets hold every line, level by level."""
    sums: dict[str, int] = {}
    for bucket in answer["buckets"]:
        for level, count in bucket["counts"].items():
            sums[level] = sums.get(level, 0) + count
    if sum(sums.values()) != lines or sums != agent["level_counts"]:
        raise RuntimeError(f"buckets add up to {sums}, the agent says {agent['level_counts']}")


def volume_bench(lines: int, queries: int) -> dict[str, Any]:
    """Fill a run of `lines` lines, then time the volume endpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        server = start_sentra(Path(tmp) / "sentra")
        try:
            client = Client(server)
            fill_seconds = fill(client, lines)
            agent = client.call("GET", f"/api/agents/{AGENT}")
            base = f"/api/agents/{AGENT}/volume"
            hour, day = T0 + lines // 2, T0 + lines // 3
            cases = {
                "whole run, 60 buckets": base,
                "whole run, 500 buckets": f"{base}?buckets=500",
                "one hour, 500 buckets": f"{base}?buckets=500&since={hour}&until={hour + 3600}",
                "one day, 60 buckets": f"{base}?since={day}&until={day + 86400}",
            }
            results: dict[str, Any] = {}
            for name, path in cases.items():
                results[name], answer = timed(client, path, queries)
                if name.startswith("whole run"):
                    check(answer, agent, lines)
            return {
                "lines": lines,
                "run_seconds": lines,
                "fill_seconds": round(fill_seconds, 1),
                "queries": queries,
                "results": results,
                "level_counts": agent["level_counts"],
            }
        finally:
            server.stop()


def wrk_bench(tree: Path, seconds: float) -> dict[str, Any]:
    """1000-line NDJSON POSTs from wrk against the server of source tree `tree`."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        secret = "bench-volume-secret-0123456789abcdef"
        (workdir / "sentra.toml").write_text(f'[auth]\njwt_secret = "{secret}"\n')
        port = free_port()
        args = [sys.executable, str(tree / "server.py"), "--port", str(port), "--db", str(workdir / "sentra.db")]
        server = _spawn("sentra", [*args, "--config", str(workdir / "sentra.toml")], workdir, port, secret=secret)
        try:
            body = workdir / "body.ndjson"
            body.write_bytes(ndjson(0, BATCH, ts=time.time()))
            script = workdir / "post.lua"
            token = jwt.encode({"sub": OWNER}, secret, algorithm="HS256")
            script.write_text(WRK_LUA.format(body=body, token=token))
            url = f"http://127.0.0.1:{port}/api/agents/{AGENT}/logs"
            subprocess.run([wrk, "-t1", "-c4", "-d2s", "-s", str(script), url], capture_output=True, check=True)
            out = subprocess.run(
                [wrk, "-t1", "-c4", f"-d{seconds:g}s", "-s", str(script), url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            server.stop()
    summary = next(json.loads(line[5:]) for line in out.splitlines() if line.startswith("JSON "))
    ok = summary["requests"] - summary["errors"]
    duration = summary["duration_us"] / 1e6
    return {
        "tree": str(tree),
        "posts_per_s": round(ok / duration, 1),
        "lines_per_s": round(ok * BATCH / duration),
        "errors": summary["errors"],
        "latency_p50_ms": summary["p50_us"] / 1000,
        "latency_p99_ms": summary["p99_us"] / 1000,
    }


def batch_cost(batches: int = 2000) -> dict[str, Any]:
    """Microseconds per 1000-line batch: the tally, and the tally with its UPSERTs, on a SQLite file in WAL mode."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import sqlite3

    from sentra.lines import CommittedLines, NewLine, NewLines
    from sentra.storage.sqlite_summary import add_tally, open_summaries
    from sentra.summary import tally_batch

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "cost.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE agents (pk INTEGER PRIMARY KEY, status TEXT, updated_at REAL, last_seq INTEGER)")
        open_summaries(db)
        now = time.time()
        runs = []
        for b in range(batches):
            lines = NewLines.of(NewLine(now + b + n / BATCH, level_of(n), "m", "", {}) for n in range(BATCH))
            runs.append([CommittedLines(AGENT, [(b * BATCH, lines)])])
        started = time.perf_counter()
        tallies = [tally_batch(written) for written in runs]
        tally_us = (time.perf_counter() - started) / batches * 1e6
        started = time.perf_counter()
        for tally in tallies:
            db.execute("BEGIN IMMEDIATE")
            add_tally(db, 1, tally[AGENT])
            db.execute("COMMIT")
        upsert_us = (time.perf_counter() - started) / batches * 1e6
        db.close()
    return {"batches": batches, "tally_us": round(tally_us, 1), "upserts_us": round(upsert_us, 1)}


def main() -> None:
    """Run the volume benchmark (or, with --wrk, the ingest one) and print its results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--wrk", type=Path, help="measure 1000-line NDJSON ingest of this source tree instead")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-cost", action="store_true", help="time the summary's work per 1000-line batch")
    args = parser.parse_args()
    if args.batch_cost:
        print(json.dumps(batch_cost(), indent=2))
        return
    if args.wrk is not None:
        print(json.dumps(wrk_bench(args.wrk.resolve(), args.seconds), indent=2))
        return
    result = volume_bench(args.lines, args.queries)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"volume-{args.lines}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
