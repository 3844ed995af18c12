"""Attachments on PostgreSQL + Redis with two Sentra processes: one stores a file, the other serves it byte for
byte, to its owner only, announces its line in its streams, counts it, and deletes it with its agent; retention
removes the blobs of the lines it removes."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time

import asyncpg
import pytest
from conftest import ServerFactory, error_of, open_stream, read_lines, stream_path
from processes import ServerProcess
from test_attachments import png, upload

pytestmark = pytest.mark.slow  # PostgreSQL, Redis and two server processes


async def blob_rows(url: str) -> int:
    """How many attachments the database holds."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM attachments"))
    finally:
        await conn.close()


async def test_one_process_stores_and_the_other_serves_to_the_owner_only(
    pair: list[ServerProcess], pg_url: str
) -> None:
    a, b = pair
    image, binary = png(32, 32), os.urandom(1024 * 1024)
    async with a.client() as on_a, b.client() as on_b, b.client("bob") as bob_on_b:
        await on_a.post("/api/agents/pg-shots/logs", json={"message": "started"})
        async with open_stream(on_b, stream_path("pg-shots")) as stream:
            await read_lines(stream, 1)
            shot = await upload(on_a, "pg-shots", image, "image/png", "step.png")
            assert shot.status_code == 201, shot.text
            event = (await read_lines(stream, 1))[0]
        assert event.json()["lines"][0]["fields"]["attachment"]["id"] == shot.json()["id"]
        blob = await upload(on_a, "pg-shots", binary, "application/octet-stream", "trace.bin")
        served = await on_b.get(shot.json()["url"])
        assert served.content == image and served.headers["content-type"] == "image/png"
        assert (await on_b.get(blob.json()["url"])).content == binary
        assert error_of(await bob_on_b.get(shot.json()["url"]))["code"] == "not_owner"
        async with b.client(token="") as anonymous:
            del anonymous.headers["Authorization"]
            assert (await anonymous.get(shot.json()["url"])).status_code == 401
        assert (await on_b.get("/api/agents/pg-shots/attachments/" + "0" * 32)).status_code == 404
        metrics = (await on_b.get("/metrics")).text
        assert re.search(r"^sentra_attachments 2\.0$", metrics, re.M)
        stored = re.search(r"^sentra_attachment_bytes (\S+)$", metrics, re.M)
        assert stored is not None and float(stored.group(1)) == len(image) + len(binary)

        # Over the limit: refused, and neither line nor blob stored.
        too_big = await upload(on_a, "pg-shots", b"x" * (10 * 1024 * 1024 + 1), "text/plain", "big.txt")
        assert too_big.status_code == 413
        assert [line["message"] for line in (await on_b.get("/api/agents/pg-shots/logs")).json()["lines"]] == [
            "started",
            "attachment step.png",
            "attachment trace.bin",
        ]
    assert await blob_rows(pg_url) == 2


async def test_a_data_url_stored_by_one_process_is_deleted_with_the_agent_by_the_other(
    pair: list[ServerProcess], pg_url: str
) -> None:
    a, b = pair
    image = png(8, 8)
    encoded = "data:image/png;base64," + base64.b64encode(image).decode()
    async with a.client() as on_a, b.client() as on_b:
        sent = await on_a.post("/api/agents/pg-b64/logs", json={"message": "shot", "fields": {"screenshot": encoded}})
        assert sent.status_code == 200, sent.text
        line = (await on_b.get("/api/agents/pg-b64/logs")).json()["lines"][0]
        assert "base64" not in str(line["fields"])
        url = line["fields"]["screenshot"]["url"]
        assert (await on_b.get(url)).content == image
        assert (await on_b.delete("/api/agents/pg-b64")).status_code == 204
        assert (await on_a.get(url)).status_code == 404
    assert await blob_rows(pg_url) == 0


async def test_retention_removes_the_blobs_of_removed_lines_on_postgresql(
    start_server: ServerFactory, pg_url: str
) -> None:
    server = await start_server(
        **{"storage.url": pg_url, "retention.max_lines_per_agent": 2, "retention.interval": "200ms"}
    )
    async with server.client() as alice:
        old = (await upload(alice, "pg-r", png(), "image/png", "old.png")).json()["url"]
        await alice.post("/api/agents/pg-r/logs", json={"message": "a"})
        kept = (await upload(alice, "pg-r", png(), "image/png", "new.png")).json()["url"]
        deadline = time.monotonic() + 10
        while (await alice.get(old)).status_code != 404 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await alice.get(old)).status_code == 404
        assert (await alice.get(kept)).status_code == 200
    assert await blob_rows(pg_url) == 1
