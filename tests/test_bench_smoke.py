"""The benchmark's load tool still counts every line: a tiny run against a real Sentra, no nginx needed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET
from processes import ServerProcess, write_config

BENCH = Path(__file__).resolve().parent.parent / "bench"
LOAD_TOOL = BENCH / "load.py"
sys.path.insert(0, str(BENCH))

from c_reader import CReaderPool, reader_binary  # noqa: E402
from load import open_publishers  # noqa: E402
from sustained import at_rates, judge, rung  # noqa: E402
from wire import SseSubscriber, Tally, Target, marked_line  # noqa: E402

pytestmark = pytest.mark.slow  # the benchmark's tools against a server child


@pytest.fixture
def sentra(tmp_path: Path) -> Iterator[ServerProcess]:
    """`python server.py` as the benchmark starts it: SQLite on disk, auth on, a known secret."""
    server = ServerProcess(tmp_path / "bench.db", config=write_config(tmp_path)).start()
    yield server
    server.terminate()


def load_tool(server: ServerProcess, *args: str) -> dict[str, Any]:
    """Run bench/load.py against the server and return its JSON report."""
    command = [sys.executable, str(LOAD_TOOL), *args, "--kind", "sentra", "--port", str(server.port)]
    command += ["--secret", SECRET, "--pid", str(server.process.pid)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("reader", "gzip"), [("python", False), ("c", False), ("python", True), ("c", True)])
def test_paced_fanout_counts_every_line_in_order(sentra: ServerProcess, reader: str, gzip: bool) -> None:
    # The Python reader runs with --strict: it also parses every event as JSON and counts its `lines`. With --gzip
    # the subscribers ask for gzip streams and inflate them.
    mode = ["--strict"] if reader == "python" else ["--reader", "c"]
    mode += ["--gzip"] if gzip else []
    result = load_tool(
        sentra, "fanout", "--channels", "2", "--subscribers", "3", "--rate", "400", "--duration", "1", *mode
    )
    assert result["reader"] == reader
    assert result["opened"] == 6
    # A slow machine may fall behind the schedule; whatever was published must all arrive.
    assert 0 < result["published"] <= 400
    # Every subscriber of a channel sees every line published to it, once, in order.
    assert result["delivered"] == result["expected"] == 3 * result["published"]
    errors = ("lost", "gaps", "disorder", "repeats", "seq_errors", "cut")
    assert {key: result[key] for key in errors} == dict.fromkeys(errors, 0)
    if reader == "python":
        # Counting markers agrees with parsing each event as JSON and counting its `lines`.
        assert result["strict_count"] == result["delivered"]
    else:
        assert result["events"] > 0
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


@pytest.mark.parametrize("otlp", [False, True], ids=["ndjson", "otlp"])
def test_ingest_counts_every_stored_line_of_both_encodings(sentra: ServerProcess, otlp: bool) -> None:
    encoding = ["--otlp"] if otlp else []
    args = ("--batch", "1000", "--connections", "2", "--duration", "1", "--tag", "ingest", *encoding)
    result = load_tool(sentra, "ingest", *args)
    assert result["requests"] > 0 and (result["non_2xx"], result["socket_errors"], result["lost"]) == (0, 0, 0)
    # Whole requests only: a refused or half-stored OTLP request would show here.
    assert result["stored"] % 1000 == 0 and result["stored"] >= 1000 * result["requests"]
    assert result["lines_per_s"] > 0
    [line] = sentra.get("/api/agents/ingest_0/logs", sub="bench-ingest_0", limit=1)["lines"]
    if otlp:
        # Each record reads back as an instrumented agent's line does.
        assert (line["level"], line["source"]) == ("INFO", "api.access")
        assert line["message"].startswith("GET /api/v1/items?page=1 200 ")
        assert line["fields"] == {"http.route": "/api/v1/items", "http.response.status_code": 200}
    else:
        # The NDJSON scenarios' lines are as agents send them: a source and a small fields object too.
        assert (line["level"], line["source"], line["fields"]) == (
            "INFO",
            "web",
            {"route": "/api/v1/items", "status": 200},
        )
        assert line["message"].startswith("GET /api/v1/items?page=1 200 ")


def test_the_report_shows_otlp_ingest_beside_ndjson_ingest_of_the_same_run() -> None:
    import report
    import run

    def scenario(title: str, rates: list[float]) -> dict[str, Any]:
        runs = [{"lines_per_s": rate, "posts_per_s": rate / 1000} for rate in rates]
        return {"title": title, "servers": {"sentra": {"runs": runs, "median": run.summarize(runs)}}}

    data = {
        "scenarios": {
            "ingest_1000": scenario("1c. NDJSON", [200_000.0, 100_000.0, 300_000.0]),
            "ingest_otlp_1000": scenario("1d. OTLP", [50_000.0, 40_000.0, 150_000.0]),
        },
        "machine": {"nproc": 2, "cpu_model": "cpu", "kernel": "k", "memory_gib": 1.0, "fd_limit": 1024},
        "versions": {},
        "date": "today",
        "command": "python bench/run.py",
        "runs": 3,
    }
    # The median of each run's ratio (0.25, 0.4, 0.5), not the ratio of the medians (75,000 / 200,000).
    assert report.beside_ratios(data) == {"ingest_otlp_1000": {"ingest_1000": {"lines_per_s": 0.4}}}
    table = report.render(data, "/tmp/x.json").split("### 1d. OTLP")[1]
    assert "| lines /s ↑ | 50,000 |" in table
    assert "| lines /s, NDJSON (1,000 lines per POST, 1c), same run | 200,000 |" in table
    assert "| lines /s, OTLP / NDJSON | 0.40× |" in table
    assert report.beside_text(data).endswith("OTLP/NDJSON 0.40× (same run)")
    del data["scenarios"]["ingest_1000"]  # run alone, 1d has nothing beside it
    assert report.beside_text(data) == "" and "same run |" not in report.render(data, "/tmp/x.json")


def test_late_joiner_replay_is_counted_to_the_last_line(sentra: ServerProcess) -> None:
    result = load_tool(sentra, "replay", "--lines", "3000")
    assert result["delivered"] == 3000
    assert (result["lost"], result["seq_errors"]) == (0, 0)


def chunked_sse(numbers: list[int], *, piece: int = 7) -> list[bytes]:
    """Seed 000-style events (one line each, in `lines`) for publisher 0, chunk-encoded and cut into
    `piece`-byte reads, as a socket may deliver them."""
    body = b""
    for n in numbers:
        line = marked_line(0, n, 0)
        data = b'{"logs":"x","status":"running","lines":[' + line[:-1] + b',"seq":%d}]}' % (n + 1)
        event = b"id: %d\ndata: %s\n\n" % (n + 1, data)
        body += b"%x\r\n%s\r\n" % (len(event), event)
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    return [stream[i : i + piece] for i in range(0, len(stream), piece)]


def tally_of(numbers: list[int], published: int) -> SseSubscriber:
    subscriber = SseSubscriber(b"", Tally(), strict="sentra")
    for read in chunked_sse(numbers):
        subscriber.data_received(read)
    subscriber.expect({0: published})
    return subscriber


async def test_subscriber_counts_lines_split_across_reads() -> None:
    subscriber = tally_of([0, 1, 2, 3], published=4)
    assert (subscriber.count, subscriber.strict_count, subscriber.lost()) == (4, 4, 0)
    assert subscriber.complete()


async def test_subscriber_reports_a_missing_line_as_lost() -> None:
    subscriber = tally_of([0, 1, 3], published=4)
    assert (subscriber.count, subscriber.gaps, subscriber.lost()) == (3, 1, 1)


async def test_subscriber_reports_late_and_repeated_lines() -> None:
    late = tally_of([0, 2, 1, 3], published=4)
    assert (late.count, late.disorder, late.lost()) == (4, 1, 0)
    repeated = tally_of([0, 1, 1, 2], published=4)
    assert (repeated.count, repeated.repeats, repeated.lost()) == (3, 1, 1)


async def wait_for_count(subscriber: SseSubscriber, count: int) -> None:
    for _ in range(200):
        if subscriber.count >= count:
            return
        await asyncio.sleep(0.05)


async def test_subscriber_resumes_a_cut_stream_from_its_last_id(sentra: ServerProcess) -> None:
    target = Target("sentra", sentra.port, secret=SECRET)
    await target.prepare(["resume_0"])
    (publisher,) = await open_publishers(target, ["resume_0"], 1, 100)
    loop = asyncio.get_running_loop()
    _, subscriber = await loop.create_connection(
        lambda: SseSubscriber(
            target.sub_request("resume_0"), Tally(), check_seq=True, resume=("127.0.0.1", sentra.port)
        ),
        "127.0.0.1",
        sentra.port,
    )
    try:
        for _ in range(3):
            assert await publisher.post()
        await wait_for_count(subscriber, 300)
        assert subscriber.transport is not None
        subscriber.transport.close()  # the stream ends as when the server cuts a slow reader
        for _ in range(2):
            assert await publisher.post()
        await wait_for_count(subscriber, 500)
        subscriber.expect({0: publisher.sent})
        assert (subscriber.cuts, subscriber.resumes) == (1, 1)
        assert (subscriber.count, subscriber.lost(), subscriber.repeats, subscriber.seq_errors) == (500, 0, 0, 0)
    finally:
        subscriber.close()
        publisher.conn.close()
        await asyncio.sleep(0.05)


async def serve_once(stream: list[bytes]) -> tuple[asyncio.Server, int]:
    """A loopback server that answers one connection with `stream`, piece by piece, and holds it open until the
    client closes it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for piece in stream:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)
        await reader.read()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def c_reader_tally(port: int, published: int, *, resume: bool = False) -> dict[str, Any]:
    """The C reader's tally of one stream of GET / on `port`, publisher 0 having sent `published` lines."""
    binary = reader_binary()
    assert binary is not None, "the benchmark needs a C compiler (Debian: gcc)"
    pool = CReaderPool("127.0.0.1", port, [("c0", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")], binary, resume=resume)
    try:
        assert (await pool.open())["opened"] == 1
        (tally,) = await pool.collect({"c0": {0: published}}, drain=3, stall=0.5)
    finally:
        await pool.close()
    return tally


@pytest.mark.parametrize(
    ("numbers", "counted"),
    [
        ([0, 1, 2, 3], {"delivered": 4, "lost": 0, "gaps": 0, "disorder": 0, "seq_errors": 0}),
        ([0, 1, 3], {"delivered": 3, "lost": 1, "gaps": 1, "disorder": 0, "seq_errors": 1}),
        ([0, 2, 1, 3], {"delivered": 3, "lost": 1, "gaps": 1, "disorder": 1, "seq_errors": 3}),
    ],
    ids=["all", "missing", "out-of-order"],
)
async def test_c_reader_dechunks_split_reads_and_reports_what_is_wrong(
    numbers: list[int], counted: dict[str, int]
) -> None:
    server, port = await serve_once(chunked_sse(numbers))
    try:
        tally = await c_reader_tally(port, 4)
    finally:
        server.close()
    assert {key: tally[key] for key in counted} == counted
    assert tally["expected"] == 4 and tally["events"] == len(numbers)
    assert len(tally["latencies"]) == 8 * counted["delivered"]


async def serve_cut_then_resume(first: list[int], rest: list[int]) -> tuple[asyncio.Server, int, list[bytes]]:
    """A loopback server that sends `first`'s events and closes the stream, as Sentra cuts a slow reader; a
    connection after that gets `rest`'s events and is held open. Returns the requests it read."""
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        stream = b"".join(chunked_sse(first if len(requests) == 1 else rest))
        writer.write(stream)
        await writer.drain()
        if len(requests) > 1:
            await reader.read()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


@pytest.mark.parametrize("resume", [True, False], ids=["resumes", "without-resume"])
async def test_c_reader_resumes_a_cut_stream_from_its_last_id(resume: bool) -> None:
    server, port, requests = await serve_cut_then_resume([0, 1, 2], [3, 4])
    try:
        tally = await c_reader_tally(port, 5, resume=resume)
    finally:
        server.close()
    if resume:
        # Like EventSource: the same request again, from the last id read (seqs 1-3 came before the cut).
        assert requests == [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 3\r\n\r\n",
        ]
        counted = {"delivered": 5, "lost": 0, "cut": 1, "resumed": 1, "seq_errors": 0, "gaps": 0, "subscribers": 1}
    else:
        assert len(requests) == 1
        counted = {"delivered": 3, "lost": 2, "cut": 1, "resumed": 0, "seq_errors": 0, "gaps": 0, "subscribers": 1}
    assert {key: tally[key] for key in counted} == counted


def step(rate: float, **figures: Any) -> dict[str, Any]:
    """A paced step's figures as the load tool reports them: held and delivered unless overridden."""
    result = {"published": int(rate * 4), "publish_rate": rate, "deliveries_per_s": rate * 100, "lost": 0, "cut": 0}
    return {**result, **figures}


def test_a_rate_is_sustained_when_held_and_delivered_with_nothing_lost() -> None:
    assert judge(step(1000.0), 1000.0, 4.0, 100) == (True, "")
    queued = judge(step(1000.0, deliveries_per_s=96_000.0), 1000.0, 4.0, 100)
    assert queued[0] is False and "not delivered: 96,000 of 100,000" in queued[1]
    late = judge(step(1000.0, publish_rate=950.0), 1000.0, 4.0, 100)
    assert late[0] is False and "rate not held" in late[1] and "950/s" in late[1]
    assert judge(step(1000.0, lost=3), 1000.0, 4.0, 100) == (False, "3 lines lost")
    assert judge(step(1000.0, cut=1), 1000.0, 4.0, 100) == (False, "1 streams cut off")


def test_sustained_rate_is_the_highest_rung_held(sentra: ServerProcess) -> None:
    result = load_tool(sentra, "sustained", "--subscribers", "3", "--duration", "0.5", "--steps", "3")
    steps = result["steps"]
    assert 1 <= len(steps) <= 3
    rungs = {rung(index) for index in range(40)}
    assert all(s["rate"] in rungs for s in steps)
    held = [s["rate"] for s in steps if s["sustained"]]
    assert result["sustained_rate"] == (max(held) if held else 0.0)
    if "next_rate" in result:
        # The rate that was not sustained is the lowest one tried above the sustained one.
        assert result["next_rate"] == min(s["rate"] for s in steps if not s["sustained"])
        assert result["next_why"]
    assert result["lost_any_step"] == 0


async def test_a_server_runs_once_at_each_rate_it_is_compared_at(sentra: ServerProcess) -> None:
    target = Target("sentra", sentra.port, secret=SECRET)
    pids = [sentra.process.pid]
    steps = await at_rates(target, pids, tag="cmp", subscribers=3, publishers=2, window=0.5, rates=[300.0, 360.0])
    assert [step["rate"] for step in steps] == [300.0, 360.0]
    assert all(step["compared"] for step in steps)
    for step in steps:
        # Judged as on the ladder: a step is sustained exactly when nothing was lost or cut and the rate held.
        assert step["sustained"] == (step["why"] == "")
        assert step["lost"] == 0 and step["cut"] == 0
        assert step["p99_ms"] is not None


async def test_each_server_is_compared_at_the_rates_of_the_others_it_did_not_try() -> None:
    import run

    asked: dict[str, list[float]] = {}

    async def compare(target: Target, server: Any, tag: str, size: Any, rates: list[float]) -> list[dict[str, Any]]:
        asked[target.kind] = rates
        return [{"rate": rate, "sustained": True, "why": "", "lost": 1, "cut": 0, "compared": True} for rate in rates]

    def result(best: float, tried: list[float]) -> dict[str, Any]:
        steps = [{"rate": rate, "sustained": rate <= best} for rate in tried]
        return {"sustained_rate": best, "steps": steps, "lost_any_step": 0}

    results = {
        "sentra": result(5546.0, [4622.0, 5546.0, 6655.0]),
        "nchan": result(1548.0, [1290.0, 1548.0, 1858.0]),
        "peer": result(1290.0, [1075.0, 1290.0, 1548.0]),
    }
    # The comparer above never reaches a server: these only name one.
    servers = {kind: run.Server(kind, 1, None, Path()) for kind in results}  # type: ignore[arg-type]
    scenario = run.Scenario("s", "S", run.ALL, run._fanout_sustained, compare)
    await run.compare_at_rates(scenario, servers, results, "t", run.QUICK)
    # Only the rates a server did not try itself, lowest first: nchan tried the peer's 1,290, the peer nchan's 1,548.
    assert asked == {"sentra": [1290.0, 1548.0], "nchan": [5546.0], "peer": [5546.0]}
    assert [s["rate"] for s in results["peer"]["steps"]] == [1075.0, 1290.0, 1548.0, 5546.0]
    # What the compared steps lost counts in the scenario's "nothing lost" figure.
    assert results["sentra"]["lost_any_step"] == 2
