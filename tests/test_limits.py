"""Limits over HTTP: body size, line size, lines per request, ingest rate and open streams per user."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

from conftest import RunningServer, ServerFactory, error_of, open_stream


async def line_count(server: RunningServer, agent: str) -> int:
    """How many lines the agent holds (0 if it does not exist)."""
    async with server.client("alice") as alice:
        response = await alice.get(f"/api/agents/{agent}")
    return int(response.json()["line_count"]) if response.status_code == 200 else 0


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    """The body in pieces, so httpx sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


# ---- body size -----------------------------------------------------------------------------------


async def test_body_above_max_body_size_is_413(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    async with server.client("alice") as alice:
        fits = json.dumps([{"message": "x" * 100}] * 8).encode()
        assert len(fits) <= 1024
        ok = await alice.post("/api/agents/a1/logs", content=fits, headers={"Content-Type": "application/json"})
        assert ok.status_code == 200
        big = json.dumps([{"message": "x" * 100}] * 20).encode()
        response = await alice.post("/api/agents/a1/logs", content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "body_too_large"
        assert "1024" in error["message"] and str(len(big)) in error["message"]
    assert await line_count(server, "a1") == 8
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/a1/logs", json="still serving")).status_code == 200


async def test_body_of_exactly_max_body_size_is_accepted(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    body = b"x" * 1023 + b"\n"
    async with server.client("alice") as alice:
        response = await alice.post("/api/agents/a1/logs", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert response.json()["accepted"] == 1


async def test_curl_upload_expecting_continue_gets_413_without_sending_body(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    upload = tmp_path / "big.log"
    upload.write_bytes(b"a log line\n" * 1000)
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "-H",
        f"Authorization: Bearer {server.token('alice')}",
        "-H",
        "Content-Type: text/plain",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{upload}",
        "-w",
        "\n%{http_code}",
        f"{server.url}/api/agents/a1/logs",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err
    body, _, status = out.decode().rpartition("\n")
    assert status == "413"
    assert json.loads(body)["error"]["code"] == "body_too_large"
    assert await line_count(server, "a1") == 0


async def test_chunked_body_above_max_body_size_is_413(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    async with server.client("alice") as alice:
        small = await alice.post(
            "/api/agents/a1/logs", content=chunks(b"short\nlines\n", 4), headers={"Content-Type": "text/plain"}
        )
        assert small.json() == {"accepted": 2, "first_seq": 1, "last_seq": 2}
        body = b"".join(b"line %d\n" % number for number in range(400))
        assert len(body) > 1024
        response = await alice.post("/api/agents/a1/logs", content=chunks(body), headers={"Content-Type": "text/plain"})
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "body_too_large" and "1024" in error["message"]
    assert await line_count(server, "a1") == 2


async def test_unauthenticated_large_body_is_401_not_413(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_body_size": 1024})
    async with server.client(None) as anonymous:
        response = await anonymous.post(
            "/api/agents/a1/logs", content=b"x" * 2000, headers={"Content-Type": "text/plain"}
        )
    assert response.status_code == 401


# ---- line size and lines per request -------------------------------------------------------------


async def test_line_above_max_line_size_is_400_naming_it(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_line_size": 1000})
    async with server.client("alice") as alice:
        batch = ["fine", "x" * 1000, "y" * 1001, "fine"]
        response = await alice.post("/api/agents/a1/logs", json=batch)
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == "invalid_line"
        assert "line 3" in error["message"] and "1001 bytes" in error["message"] and "1000" in error["message"]
        text = await alice.post(
            "/api/agents/a1/logs", content=b"ok\n" + "é".encode() * 501 + b"\n", headers={"Content-Type": "text/plain"}
        )
        assert text.status_code == 400
        assert "line 2" in error_of(text)["message"] and "1002 bytes" in error_of(text)["message"]
        fields = await alice.post("/api/agents/a1/logs", json={"message": "short", "fields": {"blob": "z" * 1000}})
        assert fields.status_code == 400 and "line 1" in error_of(fields)["message"]
    assert await line_count(server, "a1") == 0


async def test_lines_per_request_above_limit_is_413(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_lines_per_request": 5})
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/a1/logs", json=["x"] * 5)).status_code == 200
        response = await alice.post("/api/agents/a1/logs", json=["x"] * 6)
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "too_many_lines"
        assert "6 lines" in error["message"] and "limit of 5" in error["message"]
        text = await alice.post("/api/agents/a1/logs", content=b"a\n" * 6, headers={"Content-Type": "text/plain"})
        assert text.status_code == 413
    assert await line_count(server, "a1") == 5


# ---- ingest rate ---------------------------------------------------------------------------------


async def test_ingest_rate_above_limit_is_429_with_retry_after(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.ingest_rate": 10})
    async with server.client("alice") as alice:
        burst = await alice.post("/api/agents/a1/logs", json=["x"] * 10)
        assert burst.status_code == 200
        response = await alice.post("/api/agents/a1/logs", json=["x"] * 5)
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        error = error_of(response)
        assert error["code"] == "rate_limited" and "10 lines/s" in error["message"]
        # The limit is per token: another token of another user is not held back.
        async with server.client("bob") as bob:
            assert (await bob.post("/api/agents/b1/logs", json=["y"] * 10)).status_code == 200
        await asyncio.sleep(0.6)
        assert (await alice.post("/api/agents/a1/logs", json=["x"] * 5)).status_code == 200
    assert await line_count(server, "a1") == 15


async def test_batch_larger_than_burst_is_let_through_then_slowed(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.ingest_rate": 10})
    async with server.client("alice") as alice:
        big = await alice.post("/api/agents/a1/logs", json=["x"] * 25)
        assert big.status_code == 200
        response = await alice.post("/api/agents/a1/logs", json=["x"])
        assert response.status_code == 429
        # 15 lines of debt plus the one asked for, at 10 lines/s.
        assert int(response.headers["retry-after"]) == 2
    assert await line_count(server, "a1") == 25


async def test_rejected_body_does_not_use_rate_allowance(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.ingest_rate": 10})
    async with server.client("alice") as alice:
        bad = await alice.post("/api/agents/a1/logs", json=[{"message": 1}] * 10)
        assert bad.status_code == 400
        assert (await alice.post("/api/agents/a1/logs", json=["x"] * 10)).status_code == 200


# ---- streams per user ----------------------------------------------------------------------------


async def test_streams_per_user_above_limit_is_429(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_streams_per_user": 2})
    async with server.client("alice") as alice, server.client("bob") as bob:
        await alice.post("/api/agents/a1/logs", json="hello")
        await bob.post("/api/agents/b1/logs", json="hello")
        async with AsyncExitStack() as stack:
            # Keep every reader: a dropped reader's line iterator is finalised, which closes its stream.
            readers = [
                await stack.enter_async_context(open_stream(alice, "/api/agents/a1/logs/stream")) for _ in range(2)
            ]
            for reader in readers:
                assert reader.response.status_code == 200
                assert await reader.next() is not None
            async with open_stream(alice, "/api/agents/a1/logs/stream") as third:
                assert third.response.status_code == 429
                await third.response.aread()
            response = third.response
            assert "retry-after" in response.headers
            error = error_of(response)
            assert error["code"] == "too_many_streams" and "2 streams" in error["message"]
            async with open_stream(bob, "/api/agents/b1/logs/stream") as other_user:
                assert other_user.response.status_code == 200
        # Closing streams frees the allowance (the server notices the close asynchronously).
        status = 0
        for _ in range(50):
            async with open_stream(alice, "/api/agents/a1/logs/stream") as again:
                status = again.response.status_code
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
