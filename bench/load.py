"""The load tool: publish marked lines, subscribe over SSE, count every line; one function per scenario.

Usable on its own against a running server, e.g. a small fan-out against Sentra:

    python bench/load.py fanout --kind sentra --port 8765 --secret S --subscribers 3 --rate 300 --duration 1

or the highest rate it sustains, stepping paced rates up (see sustained.py):

    python bench/load.py sustained --kind sentra --port 8765 --secret S --subscribers 10 --duration 2

prints one JSON object with what was published and delivered, losses, order errors, latency and CPU.
Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from c_reader import CReaderPool, reader_binary
from procstat import CpuWindow, tree_rss, verdict
from subscribers import SubscriberPool, raise_fd_limit, use_uvloop
from wire import (
    OTLP_LOGS_PATH,
    HttpConnection,
    SseSubscriber,
    Tally,
    Target,
    agent_body,
    marked_body,
    otlp_body,
    percentiles,
)

DRAIN = 20.0
STALL = 5.0


class Publisher:
    """One keep-alive publishing connection with its own publisher id and line counter."""

    def __init__(self, target: Target, channel: str, pub: int, conn: HttpConnection, batch: int) -> None:
        self.channel, self.pub, self.conn, self.batch = channel, pub, conn, batch
        self.head = target.pub_request(channel, batch)
        self.sent = 0
        self.errors = 0
        self.last_error = ""

    async def post(self) -> bool:
        """Publish the next `batch` lines; counts them only if the server answered 2xx."""
        body = marked_body(self.pub, self.sent, self.batch)
        try:
            status, answer = await self.conn.request(self.head + b"%d\r\n\r\n" % len(body) + body)
        except (OSError, ConnectionError) as exc:
            self.errors += 1
            self.last_error = str(exc)
            return False
        if 200 <= status < 300:
            self.sent += self.batch
            return True
        self.errors += 1
        self.last_error = f"{status} {answer[:200]!r}"
        return False


async def open_publishers(target: Target, channels: list[str], per_channel: int, batch: int) -> list[Publisher]:
    """`per_channel` connections to each channel, publisher ids 0..per_channel-1 within a channel."""
    conns = await asyncio.gather(
        *(HttpConnection.open(target.host, target.port) for _ in range(len(channels) * per_channel))
    )
    return [
        Publisher(target, channel, pub, conns[i * per_channel + pub], batch)
        for i, channel in enumerate(channels)
        for pub in range(per_channel)
    ]


async def run_closed(publishers: list[Publisher], duration: float) -> float:
    """Every publisher posts back to back until `duration` ends; returns the seconds spent."""
    started = time.monotonic()
    deadline = started + duration

    async def loop(pub: Publisher) -> None:
        while time.monotonic() < deadline:
            if not await pub.post() and pub.conn.lost is not None:
                return

    await asyncio.gather(*(loop(pub) for pub in publishers))
    return time.monotonic() - started


async def run_paced(publishers: list[Publisher], rate: float, duration: float) -> float:
    """Open-loop schedule: line i at start + i/rate, to channel i mod N, on whichever of that channel's
    connections is free; a send waits when none is (the rate is then not held). Returns the seconds from
    the first send to the last."""
    by_channel: dict[str, asyncio.Queue[Publisher]] = {}
    for pub in publishers:
        by_channel.setdefault(pub.channel, asyncio.Queue()).put_nowait(pub)
    channels = list(by_channel)
    batch = publishers[0].batch
    total = int(rate * duration / batch)
    interval = batch / rate
    tasks: set[asyncio.Task[None]] = set()

    async def send(pub: Publisher, pool: asyncio.Queue[Publisher]) -> None:
        await pub.post()
        pool.put_nowait(pub)

    started = time.monotonic()
    hard_stop = started + duration * 1.5 + 1
    sent_at = started
    for i in range(total):
        now = time.monotonic()
        if now >= hard_stop:
            break
        due = started + i * interval
        if due > now:
            await asyncio.sleep(due - now)
        pool = by_channel[channels[i % len(channels)]]
        pub = await pool.get()
        sent_at = time.monotonic()
        task = asyncio.create_task(send(pub, pool))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    return max(sent_at - started + interval, 1e-6)


def _load_window(server_pids: list[int], extra: list[int]) -> CpuWindow:
    return CpuWindow({"server": server_pids, "load": [os.getpid(), *extra]}).start()


def _finish_cpu(window: CpuWindow, result: dict[str, Any], *, paced: bool) -> None:
    """Close the CPU window: cores and busiest thread of server and load tool, machine busy share, verdict."""
    cpu = window.stop()
    result["bottleneck"], result["lower_bound"] = verdict(cpu, paced=paced)
    for side in ("server", "load"):
        use = cpu[side]
        assert isinstance(use, dict)
        result[f"{side}_cores"] = use["cores"]
        result[f"{side}_busiest_thread"] = use["busiest_thread"]
    result["machine_busy"] = cpu["machine_busy"]
    result["other_cores"] = cpu["other_cores"]


async def fanout(
    target: Target,
    server_pids: list[int],
    *,
    channels: list[str],
    subscribers: int,
    publishers: int = 4,
    batch: int = 1,
    duration: float = 4.0,
    rate: float | None = None,
    procs: int = 1,
    strict: bool = False,
    watch: list[Target] | None = None,
    reader: str = "c",
) -> dict[str, Any]:
    """`subscribers` per channel watch while lines are published (closed loop, or paced at `rate` lines/s in
    total); counts every delivery, latency from send to receipt, losses and order. With `watch`, lines are
    published to `target` and the subscribers are spread over the `watch` servers (several processes).
    `reader` "c" reads with sse_reader.c (one process, `procs` unused), "python" with `procs` Python ones."""
    await target.prepare(channels)
    watched = watch or [target]
    streams = [(channel, target.sub_request(channel)) for channel in channels for _ in range(subscribers)]
    strict_mode = ("sentra" if target.kind == "sentra" else "line") if strict else ""
    # Sentra cuts a subscriber that falls too far behind; like EventSource, it then resumes from its last id.
    sentra = target.kind == "sentra"
    # The C reader outreads every server here; the Python one remains for --strict (it parses each event as JSON)
    # and where no C compiler is installed.
    binary = None if strict or reader == "python" else reader_binary()
    pools: list[SubscriberPool | CReaderPool] = [
        CReaderPool(server.host, server.port, streams[index :: len(watched)], binary, resume=sentra)
        if binary is not None
        else SubscriberPool(
            server.host,
            server.port,
            streams[index :: len(watched)],
            procs=procs,
            check_seq=sentra,
            strict=strict_mode,
            resume=sentra,
        )
        for index, server in enumerate(watched)
    ]
    result: dict[str, Any] = {"reader": "c" if binary is not None else "python"}
    try:
        result["opened"] = 0
        for pool in pools:
            opened = await pool.open()
            result["opened"] += opened["opened"]
            if opened["failed"]:
                result["open_errors"] = opened["errors"]
        pubs = await open_publishers(target, channels, publishers, batch)
        window = _load_window(server_pids, [pid for pool in pools for pid in pool.pids])
        first_send = time.monotonic_ns()
        if rate is None:
            seconds = await run_closed(pubs, duration)
        else:
            seconds = await run_paced(pubs, rate, duration)
        published: dict[str, dict[int, int]] = {}
        for pub in pubs:
            published.setdefault(pub.channel, {})[pub.pub] = pub.sent
            pub.conn.close()
        answers = await asyncio.gather(*(pool.collect(published, drain=DRAIN, stall=STALL) for pool in pools))
        tallies = [tally for answer in answers for tally in answer]
        _finish_cpu(window, result, paced=rate is not None)
    finally:
        for pool in pools:
            await pool.close()
    lines = sum(pub.sent for pub in pubs)
    result.update(
        published=lines,
        publish_rate=round(lines / seconds, 1),
        post_errors=sum(pub.errors for pub in pubs),
    )
    if result["post_errors"]:
        result["post_error"] = next(pub.last_error for pub in pubs if pub.errors)
    keys = (
        "subscribers",
        "delivered",
        "expected",
        "lost",
        "gaps",
        "disorder",
        "repeats",
        "seq_errors",
        "cut",
        "resumed",
        "events",
    )
    for key in keys:
        result[key] = sum(t[key] for t in tallies)
    errors = [error for t in tallies for error in t["errors"]]
    if errors:
        result["stream_errors"] = errors[:5]
    if strict:
        result["strict_count"] = sum(t["strict_count"] for t in tallies)
    last = max((t["last_recv"] for t in tallies), default=0)
    span = (last - first_send) / 1e9 if last else 0.0
    result["deliveries_per_s"] = round(result["delivered"] / span, 1) if span > 0 else 0.0
    result["lines_per_event"] = round(result["delivered"] / result["events"], 2) if result["events"] else 0.0
    latencies = array("q")
    for t in tallies:
        latencies.frombytes(t["latencies"])
    result.update(percentiles(latencies))
    if result["deliveries_per_s"]:
        result["server_cpu_per_100k"] = round(result["server_cores"] / (result["deliveries_per_s"] / 100_000), 3)
    return result


async def _settled_rss(pid: int) -> int:
    """The server's memory 1-5 s after the close, once it stopped shrinking: a server tears down thousands of
    streams after the client has closed them and may hand memory back only then (read at once, a server still
    freeing looked steady and counted as returning nothing)."""
    await asyncio.sleep(1.0)
    rss = tree_rss(pid)
    for _ in range(8):
        await asyncio.sleep(0.5)
        now = tree_rss(pid)
        steady = now >= rss - 64 * 1024
        rss = min(rss, now)
        if steady:
            break
    return rss


async def idle(
    target: Target, server_pids: list[int], *, connections: int, channels: list[str], procs: int = 1
) -> dict[str, Any]:
    """Open `connections` SSE streams spread over `channels`, measure server memory, close them all; then
    open and close them once more, to tell memory kept for reuse from memory leaked."""
    await target.prepare(channels)
    streams = [
        (channels[i % len(channels)], target.sub_request(channels[i % len(channels)])) for i in range(connections)
    ]
    pid = server_pids[0]
    before = tree_rss(pid)
    result: dict[str, Any] = {}
    rss: list[int] = []
    for round_ in range(2):
        pool = SubscriberPool(target.host, target.port, streams, procs=procs)
        try:
            window = _load_window(server_pids, pool.pids)
            opened = await pool.open()
            if round_ == 0:
                _finish_cpu(window, result, paced=False)
                first = opened
            await asyncio.sleep(1.0)
            rss.append(tree_rss(pid))
        finally:
            close_seconds = await pool.close()
        rss.append(await _settled_rss(pid))
        if round_ == 0:
            result["close_seconds"] = round(close_seconds, 3)
    during, after, again, final = rss
    grown = during - before
    result.update(
        connections=connections,
        opened=first["opened"],
        failed=first["failed"],
        open_seconds=round(first["seconds"], 3),
        rss_before_mb=round(before / 2**20, 1),
        rss_open_mb=round(during / 2**20, 1),
        rss_closed_mb=round(after / 2**20, 1),
        kb_per_connection=round(grown / max(first["opened"], 1) / 1024, 2),
        returned_share=round((during - after) / grown, 3) if grown > 0 else 0.0,
        reopen_growth_kb=round((again - after) / max(opened["opened"], 1) / 1024, 2),
        rss_final_mb=round(final / 2**20, 1),
    )
    if first["failed"]:
        result["open_errors"] = first["errors"]
    return result


async def ingest(
    target: Target,
    server_pids: list[int],
    *,
    channel: str,
    lines_per_post: int,
    connections: int = 8,
    duration: float = 4.0,
    threads: int = 1,
    otlp: bool = False,
) -> dict[str, Any]:
    """wrk POSTs the same body back to back on keep-alive connections; nobody subscribes. The body is lines as
    agents send them (NDJSON, or one JSON object for one line; wire.agent_line), or with `otlp` one OTLP/HTTP
    protobuf request of `lines_per_post` records to Sentra's /v1/logs."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    if otlp and target.kind != "sentra":
        raise ValueError(f"{target.kind} takes no OTLP")
    await target.prepare([channel])
    if otlp:
        body, ctype, path = otlp_body(channel, lines_per_post), "application/x-protobuf", OTLP_LOGS_PATH
    else:
        body, path = agent_body(lines_per_post), target.pub_path(channel)
        ctype = "application/json" if lines_per_post == 1 else "application/x-ndjson"
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp, "body")
        body_file.write_bytes(body)
        script = Path(tmp, "post.lua")
        headers = {**target.headers(channel), "Content-Type": ctype}
        script.write_text(_WRK_LUA.format(body=body_file, headers=json.dumps(headers)))
        args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "-s", str(script)]
        args.append(f"http://{target.host}:{target.port}{path}")
        window = CpuWindow({"server": server_pids, "load": []}).start()
        process = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
        out, err = process.stdout, process.stderr
    result: dict[str, Any] = {}
    _finish_cpu(window, result, paced=False)
    summary = next((json.loads(line[5:]) for line in out.splitlines() if line.startswith("JSON ")), None)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary: {out[-500:]} {err[-500:]}")
    ok = summary["requests"] - summary["status_errors"]
    seconds = summary["duration_us"] / 1e6
    result.update(
        requests=summary["requests"],
        non_2xx=summary["status_errors"],
        socket_errors=summary["socket_errors"],
        posts_per_s=round(ok / seconds, 1),
        lines_per_s=round(ok * lines_per_post / seconds, 1),
        latency_p50_ms=summary["p50_us"] / 1000,
        latency_p99_ms=summary["p99_us"] / 1000,
    )
    if target.kind == "sentra":
        stored = await stored_lines(target, channel)
        result["stored"] = stored
        # wrk counts answered requests; requests still in flight when it stopped may have been stored too.
        result["lost"] = max(0, ok * lines_per_post - stored)
    return result


_WRK_LUA = """
wrk.method = "POST"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
local headers = [[{headers}]]
for k, v in string.gmatch(headers, '"([^"]+)": "([^"]*)"') do wrk.headers[k] = v end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


async def stored_lines(target: Target, channel: str) -> int:
    """Sentra's count of stored lines of an agent (its last seq)."""
    conn = await HttpConnection.open(target.host, target.port)
    try:
        head = f"GET /api/agents/{channel} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {target.token(channel)}\r\n\r\n"
        status, body = await conn.request(head.encode())
        if status != 200:
            raise RuntimeError(f"GET agent {channel}: {status} {body[:200]!r}")
        return int(json.loads(body)["last_seq"])
    finally:
        conn.close()


async def fill(target: Target, channel: str, lines: int, batch: int = 1000) -> float:
    """Store `lines` lines in `batch`-line POSTs on one connection; returns the seconds it took."""
    await target.prepare([channel])
    (pub,) = await open_publishers(target, [channel], 1, batch)
    started = time.monotonic()
    try:
        for _ in range(-(-lines // batch) * 2):
            if pub.sent >= lines:
                break
            await pub.post()
    finally:
        pub.conn.close()
    if pub.sent < lines:
        raise RuntimeError(f"filling {channel}: {pub.sent} of {lines} lines stored ({pub.last_error})")
    return time.monotonic() - started


async def replay(target: Target, server_pids: list[int], *, channel: str, lines: int) -> dict[str, Any]:
    """A late joiner opens the stream of an agent holding `lines` lines: seconds until the last arrives."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    window = _load_window(server_pids, [])
    started = time.monotonic()
    _, sub = await loop.create_connection(
        lambda: SseSubscriber(target.sub_request(channel), tally, check_seq=True), target.host, target.port
    )
    sub.expect({0: lines})
    sub.done = loop.create_future()
    try:
        await asyncio.wait_for(sub.done, 60)
    except TimeoutError:
        pass
    seconds = time.monotonic() - started
    sub.close()
    result: dict[str, Any] = {}
    _finish_cpu(window, result, paced=False)
    result.update(
        lines=lines,
        seconds=round(seconds, 3),
        lines_per_s=round(sub.count / seconds, 1),
        delivered=sub.count,
        lost=sub.lost(),
        gaps=sub.gaps,
        disorder=sub.disorder,
        repeats=sub.repeats,
        seq_errors=sub.seq_errors,
        events=sub.events,
    )
    return result


async def history_page(target: Target, *, channel: str, limit: int = 10000, repeats: int = 5) -> dict[str, Any]:
    """GET one history page of `limit` lines, `repeats` times: median and best seconds."""
    conn = await HttpConnection.open(target.host, target.port)
    head = (
        f"GET /api/agents/{channel}/logs?limit={limit}&after=0 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {target.token(channel)}\r\n\r\n"
    ).encode()
    times, size, count = [], 0, 0
    try:
        for _ in range(repeats):
            started = time.monotonic()
            status, body = await conn.request(head)
            times.append(time.monotonic() - started)
            if status != 200:
                raise RuntimeError(f"history page: {status} {body[:200]!r}")
            size, count = len(body), len(json.loads(body)["lines"])
    finally:
        conn.close()
    times.sort()
    return {
        "lines": count,
        "bytes": size,
        "median_ms": round(times[len(times) // 2] * 1000, 2),
        "best_ms": round(times[0] * 1000, 2),
    }


def _main() -> int:
    parser = argparse.ArgumentParser(description="Sentra benchmark load tool (one scenario, JSON out).")
    parser.add_argument("scenario", choices=["fanout", "sustained", "idle", "ingest", "replay"])
    parser.add_argument("--kind", choices=["sentra", "nchan", "peer"], default="sentra")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default="", help="Sentra's auth.jwt_secret (HS256)")
    parser.add_argument("--pid", type=int, action="append", default=[], help="server pid(s) for CPU and memory")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--subscribers", type=int, default=3, help="per channel")
    parser.add_argument("--publishers", type=int, default=4, help="connections per channel")
    parser.add_argument("--batch", type=int, default=1, help="lines per POST")
    parser.add_argument("--rate", type=float, default=None, help="lines/s in total (default: as fast as possible)")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--lines", type=int, default=100_000, help="replay: lines stored first")
    parser.add_argument("--connections", type=int, default=1000, help="idle: connections; ingest: wrk connections")
    parser.add_argument("--procs", type=int, default=1, help="subscriber processes")
    parser.add_argument("--steps", type=int, default=8, help="sustained: most rates tried (each --duration long)")
    parser.add_argument("--strict", action="store_true", help="parse every event as JSON and count its lines")
    parser.add_argument("--reader", choices=["c", "python"], default="c", help="fanout: the subscribers' reader")
    parser.add_argument("--otlp", action="store_true", help="ingest: POST OTLP/HTTP protobuf to /v1/logs (Sentra)")
    parser.add_argument("--gzip", action="store_true", help="subscribers ask for gzip (Accept-Encoding: gzip)")
    parser.add_argument("--tag", default=f"t{os.getpid()}", help="channel name prefix")
    args = parser.parse_args()
    raise_fd_limit()
    use_uvloop()
    target = Target(args.kind, args.port, secret=args.secret, gzip=args.gzip)
    channels = [f"{args.tag}_{i}" for i in range(args.channels)]
    pids = args.pid or [os.getpid()]

    async def run() -> dict[str, Any]:
        if args.scenario == "fanout":
            return await fanout(
                target,
                pids,
                channels=channels,
                subscribers=args.subscribers,
                publishers=args.publishers,
                batch=args.batch,
                duration=args.duration,
                rate=args.rate,
                procs=args.procs,
                strict=args.strict,
                reader=args.reader,
            )
        if args.scenario == "sustained":
            from sustained import highest_sustained  # it builds on this module

            return await highest_sustained(
                target,
                pids,
                tag=args.tag,
                subscribers=args.subscribers,
                publishers=args.publishers,
                window=args.duration,
                probe=args.duration,
                max_steps=args.steps,
            )
        if args.scenario == "idle":
            return await idle(target, pids, connections=args.connections, channels=channels, procs=args.procs)
        if args.scenario == "ingest":
            return await ingest(
                target,
                pids,
                channel=channels[0],
                lines_per_post=args.batch,
                connections=args.connections,
                duration=args.duration,
                otlp=args.otlp,
            )
        await fill(target, channels[0], args.lines)
        return await replay(target, pids, channel=channels[0], lines=args.lines)

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
