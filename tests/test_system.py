"""Health, metrics, the access log and the start-up banner, as an operator meets them."""

from __future__ import annotations

import io
import logging
import pwd
import time
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, ServerFactory, make_token
from processes import ServerProcess, write_config

from sentra.auth import local_user
from sentra.config import load_config
from sentra.http.access_log import LOG_FORMAT, BatchedLogHandler


async def test_healthz_needs_no_token_and_checks_the_database(server: RunningServer) -> None:
    async with server.client(None) as anonymous:
        answer = await anonymous.get("/healthz")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    limits = {"max_line_size": 256 * 1024, "max_body_size": 8 * 1024 * 1024, "max_lines_per_request": 10_000}
    assert answer.json()["limits"] == limits  # the defaults


async def test_healthz_answers_the_configured_ingest_limits(start_server: ServerFactory) -> None:
    settings = {"limits.max_line_size": "8KiB", "limits.max_body_size": "64KiB", "limits.max_lines_per_request": 50}
    server = await start_server(**settings)
    async with server.client(None) as anonymous:
        answer = await anonymous.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["limits"] == {"max_line_size": 8192, "max_body_size": 65536, "max_lines_per_request": 50}


async def test_metrics_count_ingest_commits_and_streams(server: RunningServer) -> None:
    async with server.client("alice") as client:
        await client.post("/api/agents/m/logs", json=[{"message": f"line {n}"} for n in range(7)])
        async with client.stream("GET", "/api/agents/m/logs/stream") as stream:
            assert stream.status_code == 200
            text = (await client.get("/metrics")).text
    assert "sentra_lines_ingested_total 7.0" in text
    assert "sentra_open_streams 1.0" in text
    assert "sentra_commit_batch_lines_count" in text and "sentra_commit_seconds_bucket" in text
    assert "sentra_deliveries_total" in text


async def test_metrics_from_a_non_allowed_address_need_an_admin_token(start_server: ServerFactory) -> None:
    server = await start_server(**{"server.metrics_allow": []})
    async with server.client(None) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
    async with server.client("alice") as alice:
        assert (await alice.get("/metrics")).status_code == 403
    headers = {"Authorization": f"Bearer {make_token('root', scope='admin')}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as admin:
        answer = await admin.get("/metrics")
    assert answer.status_code == 200 and "sentra_open_streams" in answer.text


async def test_access_log_masks_tokens_in_urls(start_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = await start_server(**{"server.access_log": True})
    token = server.token("alice")
    with caplog.at_level(logging.INFO, logger="sentra.access"):
        async with server.client(None) as client:
            await client.get(f"/api/agents?token={token}&limit=5")
            await client.get(f"/api/agents/x?ticket={token}")
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "sentra.access")
    assert "/api/agents?token=***&limit=5" in logged and "ticket=***" in logged
    assert token not in logged and token.split(".")[2] not in logged


def test_access_lines_are_written_together_within_half_a_second_and_warnings_at_once() -> None:
    stream = io.StringIO()
    handler = BatchedLogHandler(stream, logging.Formatter("%(levelname)s %(message)s"), seconds=0.5, lines=100)
    logger = logging.getLogger("sentra.test-batched")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("200 first")
        logger.info("200 second")
        assert stream.getvalue() == "", "info lines wait for the next write"
        deadline = time.monotonic() + 2
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stream.getvalue() == "INFO 200 first\nINFO 200 second\n"
        logger.info("200 third")
        logger.warning("404 fourth")
        assert stream.getvalue().endswith("INFO 200 third\nWARNING 404 fourth\n"), "a warning at once, in order"
        for n in range(100):
            logger.info("200 many %d", n)
        assert stream.getvalue().endswith("INFO 200 many 99\n"), "a full batch goes out at once"
        logger.info("200 last")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert stream.getvalue().endswith("INFO 200 last\n"), "closing writes what waits"


def test_access_lines_written_without_a_log_record_read_as_the_formatter_writes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    formatter = logging.Formatter(LOG_FORMAT)
    handler = BatchedLogHandler(io.StringIO(), formatter, seconds=60, lines=100)
    try:
        for created in (time.time(), 1_700_000_000.0, 1_700_000_000.9996, 1_700_000_001.0005):
            # The record takes its time (and milliseconds) the way logging does, from the clock.
            monkeypatch.setattr(time, "time", lambda created=created: created)
            monkeypatch.setattr(time, "time_ns", lambda created=created: int(created * 1e9))
            record = logging.LogRecord(
                "sentra.access", logging.INFO, __file__, 1, "200 GET /x (127.0.0.1) 0.4ms", (), None
            )
            monkeypatch.undo()
            assert handler.format_info("200 GET /x (127.0.0.1) 0.4ms", created) == formatter.format(record)
    finally:
        handler.close()


@pytest.mark.slow  # a server child
async def test_access_log_of_the_server_process_keeps_every_line_through_shutdown(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "sentra.db", config=write_config(tmp_path, server={"access_log": True})).start()
    try:
        headers = {"Authorization": f"Bearer {make_token('alice')}"}
        async with httpx.AsyncClient(base_url=proc.url, headers=headers) as client:
            for n in range(300):
                assert (await client.post("/api/agents/logged/logs", json={"message": f"n{n}"})).status_code == 200
            assert (await client.get("/api/nothing-here")).status_code == 404
    finally:
        assert proc.terminate() == 0
    lines = [line for line in proc.stderr.splitlines() if "sentra.access" in line]
    assert sum("INFO sentra.access: 200 POST /api/agents/logged/logs (127.0.0.1)" in line for line in lines) == 300
    assert "WARNING sentra.access: 404 GET /api/nothing-here" in lines[-1]


@pytest.mark.slow  # a server child
async def test_server_started_as_the_readme_says_prints_a_token_that_works(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "sentra.db", config=write_config(tmp_path)).start()
    try:
        assert proc.banner[0].startswith(f"Sentra listening on http://127.0.0.1:{proc.port}/")
        assert proc.banner[1].startswith(f"Open http://127.0.0.1:{proc.port}/?token=")
        token = proc.banner[1].split("?token=", 1)[1]
        async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {token}"}) as client:
            answer = await client.post("/api/agents/hello/logs", json={"message": "hi"})
            assert answer.status_code == 200
            index = await client.get("/")
        assert index.status_code == 200 and "Sentra" in index.text
    finally:
        assert proc.terminate() == 0


def test_a_user_id_without_a_name_gets_a_token_for_local_instead_of_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a container started with --user 54321: no $USER and no passwd entry for the id.
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert local_user(load_config()) == "local"
