"""Soak: mixed load for a while, watching the server's memory and file descriptors.

Writers ingest into many agents; 200+ Server-Sent Event subscribers connect, read for a while and drop, over and
over, on all three stream routes; some read slowly; history pages and downloads run alongside; probe lines carry
their send time to measure delivery latency. The server's RSS and open descriptors are sampled every second.

It must answer no 5xx, keep RSS flat after warm-up, hold no more descriptors once every client has gone than
before the load, and get back to zero open streams. p99 delivery latency is reported, not asserted.

SENTRA_SOAK_SECONDS sets the duration (short default for CI; 600 for the long run), SENTRA_SOAK_SUBSCRIBERS the
number of subscribers open at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import make_token
from processes import ServerProcess

from .support import knob, open_fds, record_figures, rss_bytes

pytestmark = pytest.mark.slow  # a soak of a server child

SECONDS = knob("SENTRA_SOAK_SECONDS", 20)
SUBSCRIBERS = int(knob("SENTRA_SOAK_SUBSCRIBERS", 220))
AGENTS = 20
# Each agent starts full and retention keeps it so: the load is the same at minute 1 and minute 10, so memory
# that still grows after warm-up is a leak, not more data to replay.
LINES_PER_AGENT = 2000
USERS = ("ann", "ben", "cat")
WARM_UP = 0.3  # the first 30% of the run: caches, the database and the subscriber count are still growing
MiB = 1024 * 1024


@dataclass
class Tally:
    """What the load saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    connect_errors: int = 0
    streams_opened: int = 0
    events: int = 0
    cut_by_server: int = 0
    latencies: list[float] = field(default_factory=list)
    probes_sent: dict[str, float] = field(default_factory=dict)


def agent_of(user: str, n: int) -> str:
    """The id of agent n of a user."""
    return f"soak-{user}-{n}"


async def open_sse(
    port: int, path: str, token: str, resume: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """An HTTP/1.0 stream request, so the body comes unchunked; returns the reader after the headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Last-Event-ID: {resume}\r\n" if resume else ""
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    return reader, writer, int(head.split(b" ", 2)[1])


def stream_request(user: str, seen: dict[str, int]) -> tuple[str, str | None]:
    """A stream as clients open them: the last lines, or a reconnect resuming where it left off."""
    first, second = agent_of(user, random.randrange(AGENTS)), agent_of(user, random.randrange(AGENTS))
    kind = random.randrange(3)
    if kind == 0:
        return f"/api/agents/{first}/logs/stream?tail=20", None
    if kind == 1:
        resume = str(seen[first]) if first in seen else None
        return f"/api/v1/stream-logs/request/{first}" + ("" if resume else "?tail=20"), resume
    if first in seen and second in seen:
        return f"/api/streams?agent={first}&agent={second}", f"{first}={seen[first]},{second}={seen[second]}"
    return f"/api/agents/{first}/logs/stream?tail=20", None


def note_ids(events: list[bytes], path: str, seen: dict[str, int]) -> None:
    """Remember the last id of each agent the events carried, for a later reconnect to resume from."""
    single = path.split("/")[3] if path.startswith("/api/agents/") else None
    if path.startswith("/api/v1/"):
        single = path.split("/")[5].split("?")[0]
    for event in events:
        for line in event.split(b"\n"):
            if not line.startswith(b"id: "):
                continue
            value = line[4:].decode()
            if "=" in value:
                for part in value.split(","):
                    agent, _, seq = part.partition("=")
                    seen[agent] = max(seen.get(agent, 0), int(seq))
            elif single is not None:
                seen[single] = max(seen.get(single, 0), int(value))


async def subscriber(port: int, tally: Tally, deadline: float, number: int) -> None:
    """Open a stream, read it for a while (slowly, for some), drop it; again until the deadline."""
    slow = number % 10 == 0
    probe = number % 25 == 1
    user = "prober" if probe else USERS[number % len(USERS)]
    token = make_token(user)
    seen: dict[str, int] = {}
    for _ in range(100_000):
        if time.monotonic() >= deadline:
            return
        path, resume = ("/api/agents/probe/logs/stream?tail=0", None) if probe else stream_request(user, seen)
        try:
            reader, writer, status = await open_sse(port, path, token, resume)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            tally.connect_errors += 1
            await asyncio.sleep(0.5)
            continue
        tally.statuses[status] += 1
        tally.streams_opened += 1
        until = min(deadline, time.monotonic() + (30.0 if probe else random.uniform(0.2, 4.0)))
        buffer = b""
        try:
            while time.monotonic() < until:
                try:
                    chunk = await asyncio.wait_for(reader.read(1024 if slow else 65536), until - time.monotonic())
                except TimeoutError:
                    break
                if not chunk:
                    tally.cut_by_server += 1
                    break
                buffer += chunk
                *events, buffer = buffer.split(b"\n\n")
                tally.events += len(events)
                note_ids(events, path, seen)
                if probe:
                    received = time.monotonic()
                    for event in events:
                        for line in event.split(b"\n"):
                            if line.startswith(b"data: "):
                                for item in json.loads(line[6:]).get("lines", []):
                                    sent = tally.probes_sent.get(item["message"])
                                    if sent is not None:
                                        tally.latencies.append(received - sent)
                if slow:
                    await asyncio.sleep(0.2)
        except (ConnectionError, OSError):
            tally.cut_by_server += 1
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


async def ingest(url: str, tally: Tally, deadline: float, user: str) -> None:
    """Batches of 1-20 lines of varied size into the user's agents."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {make_token(user)}"}) as client:
        for n in range(1_000_000):
            if time.monotonic() >= deadline:
                return
            batch = [f"{user} {n} {i} " + "x" * random.choice([10, 100, 1000]) for i in range(random.randint(1, 20))]
            answer = await client.post(f"/api/agents/{agent_of(user, random.randrange(AGENTS))}/logs", json=batch)
            tally.statuses[answer.status_code] += 1
            await asyncio.sleep(0.03)


async def probes(url: str, tally: Tally, deadline: float) -> None:
    """A line every 50 ms whose message names it, its send time kept to measure delivery."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {make_token('prober')}"}) as client:
        for n in range(1_000_000):
            if time.monotonic() >= deadline:
                return
            message = f"probe-{n}"
            tally.probes_sent[message] = time.monotonic()
            answer = await client.post("/api/agents/probe/logs", json=[message])
            tally.statuses[answer.status_code] += 1
            await asyncio.sleep(0.05)


async def history(url: str, tally: Tally, deadline: float) -> None:
    """History pages, searches and whole downloads of random agents."""
    user = USERS[0]
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        for _ in range(1_000_000):
            if time.monotonic() >= deadline:
                return
            path = f"/api/agents/{agent_of(user, random.randrange(AGENTS))}/logs"
            params = random.choice(
                [{"limit": 500}, {"limit": 100, "before": 50}, {"q": "x 1"}, {"format": "ndjson"}, {"format": "text"}]
            )
            answer = await client.get(path, params=params)
            tally.statuses[answer.status_code] += 1
            await asyncio.sleep(0.1)


async def sample(proc: ServerProcess, samples: list[tuple[float, int, int]], start: float, deadline: float) -> None:
    """(seconds since start, RSS, open descriptors) of the server, every second."""
    pid = proc.process.pid
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - start, rss_bytes(pid), open_fds(pid)))
        await asyncio.sleep(1.0)


async def open_streams(client: httpx.AsyncClient) -> int:
    """What /healthz says is open."""
    return int((await client.get("/healthz")).json()["open_streams"])


async def test_soak_keeps_memory_flat_leaks_no_descriptor_and_answers_no_server_error(tmp_path: Path) -> None:
    proc = ServerProcess.in_folder(
        tmp_path,
        streams={"heartbeat": "1s"},
        limits={"subscriber_buffer": 2000},
        retention={"max_lines_per_agent": LINES_PER_AGENT, "interval": "1s"},
    ).start()
    pid = proc.process.pid
    tally = Tally()
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
            # Everything the server opens once (database files, the writer thread's connection) is open
            # before the baseline count of descriptors.
            for user in USERS:
                headers = {"Authorization": f"Bearer {make_token(user)}"}
                for n in range(AGENTS):
                    full = [f"{user} start {i} " + "x" * 100 for i in range(LINES_PER_AGENT)]
                    answer = await client.post(f"/api/agents/{agent_of(user, n)}/logs", json=full, headers=headers)
                    assert answer.status_code == 200
            headers = {"Authorization": f"Bearer {make_token('prober')}"}
            assert (await client.post("/api/agents/probe/logs", json=["start"], headers=headers)).status_code == 200
            await asyncio.sleep(0.5)
            fds_before = open_fds(pid)
            rss_before = rss_bytes(pid)

            start = time.monotonic()
            deadline = start + SECONDS
            samples: list[tuple[float, int, int]] = []
            tasks = [asyncio.create_task(sample(proc, samples, start, deadline))]
            tasks += [asyncio.create_task(subscriber(proc.port, tally, deadline, n)) for n in range(SUBSCRIBERS)]
            tasks += [asyncio.create_task(ingest(proc.url, tally, deadline, user)) for user in USERS]
            tasks += [asyncio.create_task(probes(proc.url, tally, deadline))]
            tasks += [asyncio.create_task(history(proc.url, tally, deadline))]
            peak_streams = 0
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                peak_streams = max(peak_streams, await open_streams(client))
            await asyncio.wait_for(asyncio.gather(*tasks), 60)

            # Every client has gone: the server's streams and descriptors go back to where they were.
            settle = time.monotonic() + 15
            while (await open_streams(client) or open_fds(pid) > fds_before) and time.monotonic() < settle:
                await asyncio.sleep(0.2)
            streams_after = await open_streams(client)
            fds_after = open_fds(pid)
    finally:
        code = proc.terminate()
    assert code == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]

    warm = [rss for t, rss, _ in samples if t >= WARM_UP * SECONDS]
    rss_warm, rss_end, rss_peak = warm[0], samples[-1][1], max(warm)
    latencies = sorted(tally.latencies)
    p = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)  # noqa: E731
    record_figures(
        "soak",
        {
            "seconds": SECONDS,
            "subscribers_at_once": SUBSCRIBERS,
            "peak_open_streams": peak_streams,
            "streams_opened": tally.streams_opened,
            "events_received": tally.events,
            "streams_cut_by_server": tally.cut_by_server,
            "statuses": dict(sorted(tally.statuses.items())),
            "connect_errors": tally.connect_errors,
            "rss_mib": {
                "before": round(rss_before / MiB, 1),
                "after_warm_up": round(rss_warm / MiB, 1),
                "peak_after_warm_up": round(rss_peak / MiB, 1),
                "end": round(rss_end / MiB, 1),
            },
            "rss_curve_mib": [[round(t), round(rss / MiB, 1), fds] for t, rss, fds in samples],
            "rss_growth_mib_per_minute_after_warm_up": round(
                (rss_end - rss_warm) / MiB / max(1e-9, (samples[-1][0] - WARM_UP * SECONDS) / 60), 2
            ),
            "fds": {"before": fds_before, "after": fds_after},
            "delivery_latency_ms": {"samples": len(latencies), "p50": p(0.5), "p99": p(0.99), "max": p(1.0)}
            if latencies
            else {},
        },
    )
    assert not [status for status in tally.statuses if status >= 500], tally.statuses
    assert set(tally.statuses) <= {200}, tally.statuses
    assert tally.connect_errors == 0
    assert peak_streams >= min(200, SUBSCRIBERS) * 0.8, "the load never reached its subscribers"
    assert latencies, "probe lines were never delivered"
    # Flat: after warm-up RSS grows by less than a quarter (and at least 32 MiB of slack for allocator noise).
    assert rss_peak - rss_warm < max(32 * MiB, rss_warm // 4), [round(r / MiB) for _, r, _ in samples]
    assert streams_after == 0
    assert fds_after <= fds_before, f"{fds_after - fds_before} descriptors leaked"
