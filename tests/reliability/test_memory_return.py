"""Memory that thousands of streams took is handed back to the system once they close."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
from conftest import make_token
from processes import ServerProcess

from .support import rss_bytes

pytestmark = pytest.mark.slow  # a server child's memory, measured

STREAMS = 10_000
MiB = 1024 * 1024


async def open_streams(port: int, count: int, token: str) -> list[asyncio.StreamWriter]:
    """`count` SSE streams on ten agents, each answered 200 with its first bytes read."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(10):
            answer = await client.post(f"http://127.0.0.1:{port}/api/agents/mem-{n}/logs", json=["started"])
            assert answer.status_code == 200, answer.text
    gate = asyncio.Semaphore(200)
    writers: list[asyncio.StreamWriter] = []

    async def open_one(n: int) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET /api/agents/mem-{n % 10}/logs/stream HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            writers.append(writer)

    await asyncio.gather(*(open_one(n) for n in range(count)))
    return writers


async def settled_rss(pid: int, within: float = 10) -> int:
    """The server's RSS once it stopped shrinking for a second (or after `within` seconds)."""
    deadline = time.monotonic() + within
    low, steady_since = rss_bytes(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - steady_since < 1.0:
        await asyncio.sleep(0.1)
        now = rss_bytes(pid)
        if now < low - 256 * 1024:
            low, steady_since = now, time.monotonic()
    return low


async def test_memory_taken_by_thousands_of_streams_is_given_back_when_they_close(tmp_path: Path) -> None:
    proc = ServerProcess.in_folder(tmp_path, limits={"max_streams_per_user": STREAMS * 2}).start()
    try:
        pid = proc.process.pid
        await asyncio.sleep(0.5)
        before = rss_bytes(pid)
        writers = await open_streams(proc.port, STREAMS, make_token("watcher"))
        await asyncio.sleep(0.5)
        during = rss_bytes(pid)
        for writer in writers:
            writer.close()
        after = await settled_rss(pid)
    finally:
        assert proc.terminate() == 0, proc.stderr[-3000:]
    grown = during - before
    assert grown > 20 * MiB, f"{STREAMS} streams took only {grown / MiB:.1f} MiB: the test measures nothing"
    returned = (during - after) / grown
    released = [
        (int(closed), int(high) * MiB, int(low) * MiB)
        for closed, high, low in re.findall(r"(\d+) connections closed: resident memory (\d+) -> (\d+) MB", proc.stderr)
    ]
    figures = (
        f"{before / MiB:.0f} MiB before, {during / MiB:.0f} with {STREAMS} streams, {after / MiB:.0f} after they"
        f" closed ({returned:.0%} given back); released: {released}"
    )
    # Once the streams have closed the server collects and trims its heap, and says how much that gave back.
    assert sum(closed for closed, _, _ in released) >= STREAMS, figures
    assert sum(high - low for _, high, low in released) >= 0.1 * grown, figures
    assert returned >= 0.5, figures
