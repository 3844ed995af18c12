"""A subscriber that stops reading is cut off instead of growing server memory, and loses nothing.

The non-reader is a raw socket with a small receive buffer that sends its GET and never calls recv():
the honest way to be a slow client. A normal reader follows the same agent the whole time.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import httpx
import pytest
from conftest import ServerFactory, make_token, open_stream

TOTAL = 50_000
PER_REQUEST = 250
PADDING = "x" * 200


async def open_non_reader(port: int, path: str, token: str) -> socket.socket:
    """Connect, send the request and return the socket, which the caller does not read from (yet)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    return sock


async def read_to_end(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sent, up to the point where it closed the connection."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []

    async def drain() -> None:
        while True:
            try:
                chunk = await loop.sock_recv(sock, 1 << 16)
            except ConnectionResetError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    await asyncio.wait_for(drain(), timeout)
    return b"".join(chunks)


def dechunk(raw: bytes) -> tuple[int, bytes]:
    """The status and the body of a chunked HTTP response, up to the last complete chunk."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    body = bytearray()
    while True:
        size_line, sep, after = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0 or len(after) < size + 2:
            break
        body += after[:size]
        rest = after[size + 2 :]
    return status, bytes(body)


def complete_events(body: bytes) -> list[tuple[str | None, str]]:
    """(id, data) of every SSE event that was received whole."""
    events = []
    for block in body.split(b"\n\n")[:-1]:
        event_id, data = None, []
        for line in block.decode().split("\n"):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((event_id, "\n".join(data)))
    return events


async def overflow_cuts(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(r'^sentra_subscribers_cut_total\{reason="overflow"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow  # fills a subscriber's buffer over seconds
async def test_non_reading_subscriber_is_cut_while_others_get_every_line(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.subscriber_buffer": 1000})
    path = "/api/agents/flood/logs/stream"
    async with server.client("alice") as alice, server.client("alice") as watcher:
        assert (await alice.post("/api/agents", json={"id": "flood"})).status_code == 201
        normal_seqs: list[int] = []
        normal_final: list[bool] = []

        async def follow() -> None:
            async with open_stream(watcher, path) as stream:
                while True:
                    event = await stream.next(timeout=20)
                    if event is None:
                        return
                    data = event.json()
                    normal_seqs.extend(line["seq"] for line in data["lines"])
                    if data.get("final"):
                        normal_final.append(True)
                        return

        follower = asyncio.create_task(follow())
        sock = await open_non_reader(server.port, path, make_token("alice"))
        try:
            deadline = time.monotonic() + 5
            while (await alice.get("/healthz")).json()["open_streams"] < 2:
                assert time.monotonic() < deadline, "the streams never opened"
                await asyncio.sleep(0.02)
            for start in range(1, TOTAL + 1, PER_REQUEST):
                batch = [f"{n} {PADDING}" for n in range(start, start + PER_REQUEST)]
                response = await alice.post("/api/agents/flood/logs", json=batch)
                assert response.status_code == 200
            assert await overflow_cuts(alice) >= 1
            assert (await alice.get("/healthz")).json()["open_streams"] == 1
            assert (await alice.patch("/api/agents/flood", json={"status": "completed"})).status_code == 200
            await asyncio.wait_for(follower, 30)
            # The server closed the non-reader's connection: draining it ends in EOF, without a final event.
            raw = await read_to_end(sock, timeout=20)
        finally:
            sock.close()
        assert normal_final == [True]
        assert normal_seqs == list(range(1, TOTAL + 1))

        status, body = dechunk(raw)
        assert status == 200
        events = complete_events(body)
        assert all('"final"' not in data for _, data in events)
        seen = [line["seq"] for _, data in events for line in json.loads(data)["lines"]]
        last_seen = int(events[-1][0] or 0) if events else 0
        assert seen == list(range(1, last_seen + 1))
        assert last_seen < TOTAL
        # Reconnecting as EventSource would, with the last id it saw, gives everything it missed.
        async with open_stream(alice, path, headers={"Last-Event-ID": str(last_seen)}) as stream:
            resumed = await stream.collect_until_closed(timeout=20)
        resumed_seqs = [line["seq"] for event in resumed for line in event.json()["lines"]]
        assert resumed_seqs == list(range(last_seen + 1, TOTAL + 1))
        assert resumed[-1].json()["final"] is True


async def test_reader_that_keeps_up_is_not_cut_by_a_batch_larger_than_the_buffer(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.subscriber_buffer": 100})
    path = "/api/agents/burst/logs/stream"
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents", json={"id": "burst"})).status_code == 201
        async with open_stream(alice, path) as stream:
            for start in (1, 1001):
                response = await alice.post(
                    "/api/agents/burst/logs", json=[f"line {n}" for n in range(start, start + 1000)]
                )
                assert response.status_code == 200
            assert (await alice.patch("/api/agents/burst", json={"status": "completed"})).status_code == 200
            events = await stream.collect_until_closed(timeout=10)
        assert [line["seq"] for event in events for line in event.json()["lines"]] == list(range(1, 2001))
        assert events[-1].json()["final"] is True
        assert await overflow_cuts(alice) == 0


@pytest.mark.slow  # pours lines in over a second
async def test_replay_while_lines_pour_in_is_not_cut_and_misses_nothing(start_server: ServerFactory) -> None:
    # A reader replaying a long history is not slow: lines that arrive meanwhile must not get it cut.
    server = await start_server(**{"limits.subscriber_buffer": 50})
    old = 30_000
    async with server.client("alice") as alice:
        for start in range(1, old + 1, 5000):
            batch = [f"old {n}" for n in range(start, start + 5000)]
            assert (await alice.post("/api/agents/pour/logs", json=batch)).status_code == 200
        started = asyncio.Event()

        async def pour(writer: int) -> None:
            for n in range(50):
                answer = await alice.post("/api/agents/pour/logs", json=[f"new {writer}-{n}-{k}" for k in range(10)])
                assert answer.status_code == 200
                started.set()

        writers = [asyncio.create_task(pour(w)) for w in range(4)]
        await started.wait()
        async with open_stream(alice, "/api/agents/pour/logs/stream") as stream:
            await asyncio.gather(*writers)
            assert (await alice.patch("/api/agents/pour", json={"status": "completed"})).status_code == 200
            events = await stream.collect_until_closed(timeout=30)
        seqs = [line["seq"] for event in events for line in event.json()["lines"]]
        assert seqs == list(range(1, old + 4 * 50 * 10 + 1))
        assert events[-1].json()["final"] is True
        assert await overflow_cuts(alice) == 0
