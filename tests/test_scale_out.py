"""Two Sentra processes on one PostgreSQL database and one Redis, started as the README says: what a user of
either process sees is what a user of one process would see."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_token, messages_of, open_stream, read_lines, seqs_of
from processes import ROOT, ServerProcess, write_config

pytestmark = pytest.mark.slow  # PostgreSQL, Redis and two server children


async def test_a_line_ingested_on_one_process_reaches_a_watcher_of_the_other(pair: list[ServerProcess]) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        assert (await on_a.post("/api/agents/run-1/logs", json={"message": "hello"})).status_code == 200
        async with open_stream(on_b, "/api/agents/run-1/logs/stream") as reader:
            assert messages_of(await read_lines(reader, 1)) == ["hello"]
            started = time.monotonic()
            assert (await on_a.post("/api/agents/run-1/logs", json={"message": "live"})).status_code == 200
            events = await read_lines(reader, 1)
            assert messages_of(events) == ["live"]
            assert events[-1].id == "2"
            assert time.monotonic() - started < 2.0
            # A status change on A ends B's stream, with the status.
            response = await on_a.patch("/api/agents/run-1", json={"status": "completed"})
            assert response.status_code == 200
            final = await reader.collect_until_closed()
            assert final[-1].json()["final"] is True
            assert final[-1].json()["status"] == "completed"


async def test_two_processes_ingesting_into_one_agent_give_gap_free_seqs(pair: list[ServerProcess]) -> None:
    a, b = pair
    per_writer, batch = 20, 25

    async def write(process: ServerProcess, tag: str) -> list[int]:
        firsts = []
        async with process.client() as http:
            for n in range(per_writer):
                lines = [{"message": f"{tag}-{n}-{i}"} for i in range(batch)]
                response = await http.post("/api/agents/shared/logs", json=lines)
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["last_seq"] - body["first_seq"] == batch - 1
                firsts.append(body["first_seq"])
        return firsts

    results = await asyncio.gather(*(write(p, f"{p.port}-{w}") for p in (a, b) for w in range(3)))
    total = 2 * 3 * per_writer * batch
    starts = sorted(first for firsts in results for first in firsts)
    assert starts == list(range(1, total + 1, batch))
    async with b.client() as on_b:
        stored: list[dict[str, Any]] = []
        after = 0
        while True:
            page = (await on_b.get("/api/agents/shared/logs", params={"after": after, "limit": 10000})).json()
            if not page["lines"]:
                break
            stored += page["lines"]
            after = page["lines"][-1]["seq"]
        assert [line["seq"] for line in stored] == list(range(1, total + 1))
        # Each request's lines are contiguous and in the order they were sent.
        by_request: dict[str, list[int]] = {}
        for line in stored:
            tag, _, index = line["message"].rpartition("-")
            by_request.setdefault(tag, []).append(int(index))
        assert all(indexes == list(range(batch)) for indexes in by_request.values())
        assert len(by_request) == total // batch


async def test_a_client_resumes_on_the_other_process_when_one_is_killed(pair: list[ServerProcess]) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        for n in range(5):
            await on_b.post("/api/agents/run-1/logs", json={"message": f"line {n + 1}"})
        seen: list[int] = []
        async with open_stream(on_a, "/api/agents/run-1/logs/stream") as reader:
            events = await read_lines(reader, 5)
            seen += seqs_of(events)
            last_id = events[-1].id
        a.kill()
        # While the client reconnects, the agent goes on logging through B.
        for n in range(5, 12):
            await on_b.post("/api/agents/run-1/logs", json={"message": f"line {n + 1}"})
        async with open_stream(on_b, "/api/agents/run-1/logs/stream", headers={"Last-Event-ID": last_id}) as reader:
            seen += seqs_of(await read_lines(reader, 7))
        assert seen == list(range(1, 13))


async def test_an_idempotency_key_retried_on_the_other_process_stores_nothing_twice(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    headers = {"Idempotency-Key": "batch-7"}
    async with a.client() as on_a, b.client() as on_b:
        first = await on_a.post("/api/agents/run-1/logs", json=[{"message": "x"}, {"message": "y"}], headers=headers)
        retry = await on_b.post("/api/agents/run-1/logs", json=[{"message": "x"}, {"message": "y"}], headers=headers)
        assert first.status_code == retry.status_code == 200
        assert first.json() == retry.json()
        history = (await on_b.get("/api/agents/run-1/logs")).json()
        assert [line["message"] for line in history["lines"]] == ["x", "y"]


async def test_the_ingest_rate_limit_is_one_allowance_across_processes(
    tmp_path: Path, pg_url: str, redis_url: str, bus_prefix: str
) -> None:
    config = write_config(
        tmp_path,
        storage={"url": pg_url},
        bus={"url": redis_url, "prefix": bus_prefix},
        limits={"ingest_rate": 20},
    )
    a = ServerProcess(tmp_path / "a.db", config=config).start()
    b = ServerProcess(tmp_path / "b.db", config=config).start()
    try:
        token = make_token("alice")  # the allowance is per token
        async with a.client(token=token) as on_a, b.client(token=token) as on_b:
            burst = [{"message": str(n)} for n in range(15)]
            assert (await on_a.post("/api/agents/run-1/logs", json=burst)).status_code == 200
            refused = await on_b.post("/api/agents/run-1/logs", json=burst)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["Retry-After"]) >= 1
    finally:
        a.terminate()
        b.terminate()


async def test_a_token_revoked_once_is_refused_by_every_process(
    pair: list[ServerProcess], scale_out_config: Path
) -> None:
    a, b = pair
    token = make_token("alice", jti="tok-1")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        for process in pair:
            assert (await http.get(f"{process.url}/api/agents", headers=headers)).status_code == 200
        revoke = subprocess.run(
            [sys.executable, "-m", "sentra", "token", "revoke", "tok-1", "--config", str(scale_out_config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert revoke.returncode == 0, revoke.stderr
        deadline = time.monotonic() + 5
        refused: set[int] = set()
        while len(refused) < 2 and time.monotonic() < deadline:
            for process in pair:
                if (await http.get(f"{process.url}/api/agents", headers=headers)).status_code == 401:
                    refused.add(process.port)
            await asyncio.sleep(0.2)
        assert refused == {a.port, b.port}


async def test_a_redis_restart_mid_stream_loses_nothing(tmp_path: Path, pg_url: str, own_redis: Any) -> None:
    config = write_config(tmp_path, storage={"url": pg_url}, bus={"url": own_redis.url, "prefix": "sentra"})
    a = ServerProcess(tmp_path / "a.db", config=config).start()
    b = ServerProcess(tmp_path / "b.db", config=config).start()
    total = 300
    try:
        async with a.client() as on_a, b.client() as on_b:
            await on_a.post("/api/agents/run-1/logs", json={"message": "0"})
            async with open_stream(on_b, "/api/agents/run-1/logs/stream") as reader:
                received = seqs_of(await read_lines(reader, 1))

                async def publish() -> None:
                    for n in range(1, total):
                        response = await on_a.post("/api/agents/run-1/logs", json={"message": str(n)})
                        assert response.status_code == 200, response.text
                        if n == total // 3:
                            own_redis.stop()  # lines keep being committed while the bus is down
                        if n == 2 * total // 3:
                            own_redis.start()
                        await asyncio.sleep(0.002)

                publishing = asyncio.create_task(publish())
                while len(received) < total:
                    received += seqs_of(await read_lines(reader, 1, timeout=15))
                await publishing
            assert received == list(range(1, total + 1))
            # The operator can see it happened.
            metrics = (await on_b.get("/metrics")).text
            resyncs = re.search(r"^sentra_bus_resyncs_total (\S+)$", metrics, flags=re.M)
            assert resyncs is not None and float(resyncs.group(1)) >= 1
    finally:
        a.terminate()
        b.terminate()


async def test_an_agent_deleted_on_one_process_is_gone_on_the_other(pair: list[ServerProcess]) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        await on_b.post("/api/agents/run-1/logs", json={"message": "one"})
        async with open_stream(on_b, "/api/agents/run-1/logs/stream") as reader:
            await read_lines(reader, 1)
            assert (await on_a.delete("/api/agents/run-1")).status_code == 204
            final = await reader.collect_until_closed()
            assert final[-1].json()["final"] is True
            assert final[-1].json()["reason"] == "deleted"
        assert (await on_b.get("/api/agents/run-1")).status_code == 404
        # The id is free again on both: a new run starts at seq 1.
        assert (await on_b.post("/api/agents/run-1/logs", json={"message": "again"})).json()["first_seq"] == 1
        listed = (await on_a.get("/api/agents")).json()
        assert [(agent["id"], agent["line_count"]) for agent in listed["agents"]] == [("run-1", 1)]


@pytest.mark.parametrize(
    ("section", "values", "package"),
    [
        ("storage", {"url": "postgresql://sentra@127.0.0.1:1/sentra"}, "asyncpg"),
        ("bridge", {"redis_url": "redis://127.0.0.1:1/0"}, "redis"),
    ],
)
def test_an_engine_without_its_package_stops_start_up_with_one_line(
    tmp_path: Path, section: str, values: dict[str, str], package: str
) -> None:
    config = write_config(tmp_path, **{section: values})
    # As if `pip install sentra` had been run without the scale extra.
    code = (
        "import sys; sys.modules['asyncpg'] = None; sys.modules['redis'] = None; "
        "from sentra.cli import main; sys.exit(main(['serve', '--port', '0', '--config', sys.argv[1]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(config)], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sentra: {section}.{next(iter(values))} needs the Python package {package}: pip install 'sentra[scale]'"
    ]
