"""docs/deploy.md's nginx block, run for real in front of two Sentra processes on PostgreSQL and Redis."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_token, open_stream, seqs_of
from processes import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.slow  # nginx, PostgreSQL, Redis and two server children

DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def nginx_block() -> str:
    """The one ```nginx block of docs/deploy.md."""
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOY_DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/deploy.md should show exactly one nginx block"
    return str(blocks[0])


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "nginx is missing: apt-get install nginx-light (.ci/run installs it)"
    return found


@pytest.fixture
def deployment(tmp_path: Path, pair: list[ServerProcess]) -> Iterator[tuple[str, list[ServerProcess]]]:
    """docs/deploy.md's nginx in front of the pair, on a loopback port of its own."""
    processes = pair
    port = free_port()
    block = nginx_block()
    block = block.replace("127.0.0.1:8001", f"127.0.0.1:{processes[0].port}")
    block = block.replace("127.0.0.1:8002", f"127.0.0.1:{processes[1].port}")
    block = block.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path}/body;\nproxy_temp_path {tmp_path}/proxy;\n"
        f"{block}\n}}\n"
    )
    nginx = subprocess.Popen([nginx_binary(), "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else "nginx exited"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", processes
    finally:
        nginx.terminate()
        nginx.communicate(timeout=10)


async def test_events_pass_through_nginx_at_once_and_streams_fail_over(
    deployment: tuple[str, list[ServerProcess]],
) -> None:
    url, (a, b) = deployment
    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers) as proxy,
        httpx.AsyncClient(base_url=a.url, headers=headers) as direct_a,
    ):
        assert (await proxy.post("/api/agents/run-1/logs", json={"message": "one"})).status_code == 200
        seen: list[int] = []
        async with open_stream(proxy, "/api/agents/run-1/logs/stream") as reader:
            first = await reader.next(5)
            assert first is not None
            seen += seqs_of([first])
            # Unbuffered: a line written straight to one process arrives through nginx within a moment.
            for n in range(3):
                started = time.monotonic()
                response = await direct_a.post("/api/agents/run-1/logs", json={"message": f"live {n}"})
                assert response.status_code == 200
                event = await reader.next(5)
                assert event is not None
                assert time.monotonic() - started < 1.0
                seen += seqs_of([event])
            last_id = seen[-1]
        # One process dies; the reconnect with Last-Event-ID lands on the survivor and misses nothing.
        a.kill()
        async with httpx.AsyncClient(base_url=b.url, headers=headers) as direct_b:
            for n in range(3, 6):
                assert (await direct_b.post("/api/agents/run-1/logs", json={"message": f"live {n}"})).status_code == 200
        resume = {"Last-Event-ID": str(last_id)}
        async with open_stream(proxy, "/api/agents/run-1/logs/stream", headers=resume) as reader:
            # A connection refused by the dead process is retried on the other (proxy_next_upstream error).
            assert reader.response.status_code == 200
            events = []
            while len(seqs_of(events)) < 3:
                event = await reader.next(5)
                assert event is not None
                events.append(event)
            seen += seqs_of(events)
        assert seen == list(range(1, 8))
        # New requests go to the survivor too.
        for _ in range(4):
            assert (await proxy.get("/api/agents/run-1")).status_code == 200
