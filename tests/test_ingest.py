"""Ingest over HTTP: every body format and alias, seq assignment, atomic batches, bad input, finished agents,
Idempotency-Key."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory, error_of

from sentra.models import AppendResult
from sentra.storage.sqlite import WAL_RESTART_BYTES


async def lines_of(client: httpx.AsyncClient, agent: str, **params: Any) -> list[dict[str, Any]]:
    """The agent's stored lines, from the history API."""
    response = await client.get(f"/api/agents/{agent}/logs", params={"limit": 10000, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["lines"])


# ---- formats -------------------------------------------------------------------------------------


async def test_json_object_is_one_line(alice: httpx.AsyncClient) -> None:
    response = await alice.post(
        "/api/agents/a1/logs", json={"message": "hello", "level": "warning", "source": "stdout"}
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    [line] = await lines_of(alice, "a1")
    assert (line["seq"], line["message"], line["level"], line["source"], line["fields"]) == (
        1,
        "hello",
        "WARNING",
        "stdout",
        {},
    )
    assert line["agent"] == "a1"


async def test_json_array_of_objects_and_strings(alice: httpx.AsyncClient) -> None:
    body = [{"message": "one"}, "two", {"message": "three", "level": "ERROR"}]
    response = await alice.post("/api/agents/a1/logs", json=body)
    assert response.json() == {"accepted": 3, "first_seq": 1, "last_seq": 3}
    lines = await lines_of(alice, "a1")
    assert [(line["seq"], line["message"], line["level"]) for line in lines] == [
        (1, "one", "INFO"),
        (2, "two", "INFO"),
        (3, "three", "ERROR"),
    ]


async def test_ndjson_body_skips_blank_lines(alice: httpx.AsyncClient) -> None:
    body = '{"message": "first"}\n\n{"message": "second", "level": "debug"}\r\n"third"\n'
    response = await alice.post(
        "/api/agents/a1/logs", content=body.encode(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.json() == {"accepted": 3, "first_seq": 1, "last_seq": 3}
    lines = await lines_of(alice, "a1")
    assert [(line["message"], line["level"]) for line in lines] == [
        ("first", "INFO"),
        ("second", "DEBUG"),
        ("third", "INFO"),
    ]


async def test_text_plain_each_text_line_is_a_log_line(alice: httpx.AsyncClient) -> None:
    # CRLF line ends, a blank line inside (kept: it is part of the output) and a trailing newline (not a line).
    body = "New log line\r\nAnother line\r\n\r\nlast one\n"
    response = await alice.post(
        "/api/agents/a1/logs", content=body.encode(), headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    assert response.json() == {"accepted": 4, "first_seq": 1, "last_seq": 4}
    lines = await lines_of(alice, "a1")
    assert [line["message"] for line in lines] == ["New log line", "Another line", "", "last one"]
    assert {line["level"] for line in lines} == {"INFO"}


async def test_text_without_trailing_newline_keeps_last_line(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents/a1/logs", content=b"a\nb", headers={"Content-Type": "text/plain"})
    assert response.json()["accepted"] == 2
    assert [line["message"] for line in await lines_of(alice, "a1")] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message": "json by its look"}', ["json by its look"]),
        (b'[{"msg": "array"}, "of two"]', ["array", "of two"]),
        (b"plain words from curl -d\nsecond", ["plain words from curl -d", "second"]),
    ],
)
async def test_curl_default_form_content_type_is_read_by_its_body(
    alice: httpx.AsyncClient, body: bytes, expected: list[str]
) -> None:
    response = await alice.post(
        "/api/agents/a1/logs", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200, response.text
    assert [line["message"] for line in await lines_of(alice, "a1")] == expected


async def test_real_curl_data_flag_posts_json(server: RunningServer) -> None:
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "-H",
        f"Authorization: Bearer {server.token('alice')}",
        "-d",
        '{"message": "from curl", "level": "error"}',
        f"{server.url}/api/agents/curl-run/logs",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, err
    assert json.loads(out) == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    async with server.client("alice") as alice:
        [line] = await lines_of(alice, "curl-run")
    assert (line["message"], line["level"]) == ("from curl", "ERROR")


async def test_unsupported_content_type_is_400(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents/a1/logs", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert "application/xml" in error["message"]


# ---- aliases and field normalisation -------------------------------------------------------------


async def test_seed001_publisher_payload_is_accepted_as_is(alice: httpx.AsyncClient) -> None:
    request_id = "597e433d-f3f9-4cd9-ba71-4c2b8deef68b"
    payload = {
        "agent_name": "browser agent",
        "msg": "📍 Step 1: Navigate to google.com",
        "request_id": request_id,
        "timestamp": 1695307200.123,
        "source": "logger",
    }
    response = await alice.post(f"/api/agents/{request_id}/logs", json=payload)
    assert response.status_code == 200
    [line] = await lines_of(alice, request_id)
    assert line["message"] == "📍 Step 1: Navigate to google.com"
    assert line["ts"] == pytest.approx(1695307200.123)
    assert line["source"] == "logger"
    assert line["level"] == "INFO"
    assert line["fields"] == {"agent_name": "browser agent", "request_id": request_id}
    agent = (await alice.get(f"/api/agents/{request_id}")).json()
    assert agent["name"] == "browser agent"


async def test_overlong_agent_name_is_cut_to_the_name_limit(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json={"agent_name": "n" * 2000, "msg": "m"})
    agent = (await alice.get("/api/agents/a1")).json()
    assert agent["name"] == "n" * 512
    [line] = await lines_of(alice, "a1")
    assert line["fields"]["agent_name"] == "n" * 2000


async def test_levelname_and_log_source_aliases(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json={"msg": "m", "levelname": "Error", "log_source": "worker.py"})
    [line] = await lines_of(alice, "a1")
    assert (line["message"], line["level"], line["source"]) == ("m", "ERROR", "worker.py")


async def test_unknown_keys_go_into_fields_merged_with_fields(alice: httpx.AsyncClient) -> None:
    body = {"message": "m", "step": 3, "tags": ["a"], "fields": {"url": "https://example.test", "n": None}}
    await alice.post("/api/agents/a1/logs", json=body)
    [line] = await lines_of(alice, "a1")
    assert line["fields"] == {"step": 3, "tags": ["a"], "url": "https://example.test", "n": None}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("debug", "DEBUG"),
        ("Info", "INFO"),
        ("WARN", "WARNING"),
        ("warning", "WARNING"),
        ("error", "ERROR"),
        ("critical", "CRITICAL"),
        (10, "DEBUG"),
        (20, "INFO"),
        (25, "INFO"),
        (30, "WARNING"),
        (40, "ERROR"),
        (50, "CRITICAL"),
        ("40", "ERROR"),
    ],
)
async def test_level_case_insensitive_and_numeric(alice: httpx.AsyncClient, given: Any, stored: str) -> None:
    response = await alice.post("/api/agents/a1/logs", json={"message": "m", "level": given})
    assert response.status_code == 200, response.text
    [line] = await lines_of(alice, "a1")
    assert line["level"] == stored


async def test_unknown_level_is_400_naming_it(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents/a1/logs", json=[{"message": "ok"}, {"message": "m", "level": "LOUD"}])
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_line"
    assert "line 2" in error["message"] and "LOUD" in error["message"]


@pytest.mark.parametrize(
    "ts",
    [1695307200.5, 1695307200500, 1695307200500000, 1695307200500000000, "1695307200.5", "2023-09-21T14:40:00.5Z"],
    ids=["seconds", "milliseconds", "microseconds", "nanoseconds", "string-seconds", "iso8601"],
)
async def test_ts_units_are_normalised_to_seconds(alice: httpx.AsyncClient, ts: Any) -> None:
    await alice.post("/api/agents/a1/logs", json={"message": "m", "ts": ts})
    [line] = await lines_of(alice, "a1")
    assert line["ts"] == pytest.approx(1695307200.5, abs=1e-3)


async def test_timestamp_alias_iso_with_offset_and_naive_is_utc(alice: httpx.AsyncClient) -> None:
    await alice.post(
        "/api/agents/a1/logs",
        json=[
            {"msg": "offset", "timestamp": "2023-09-21T16:40:00+02:00"},
            {"msg": "naive", "timestamp": "2023-09-21T14:40:00"},
        ],
    )
    lines = await lines_of(alice, "a1")
    assert [line["ts"] for line in lines] == [pytest.approx(1695307200.0), pytest.approx(1695307200.0)]


async def test_javascript_date_now_is_milliseconds(alice: httpx.AsyncClient) -> None:
    now_ms = int(time.time() * 1000)
    await alice.post("/api/agents/a1/logs", json={"message": "m", "ts": now_ms})
    [line] = await lines_of(alice, "a1")
    assert line["ts"] == pytest.approx(now_ms / 1000, abs=1e-3)


async def test_missing_ts_is_receive_time(alice: httpx.AsyncClient) -> None:
    before = time.time()
    await alice.post("/api/agents/a1/logs", json={"message": "m"})
    after = time.time()
    [line] = await lines_of(alice, "a1")
    assert before - 1 <= line["ts"] <= after + 1


async def test_unicode_emoji_newlines_and_nul_round_trip(alice: httpx.AsyncClient) -> None:
    messages = ["émoji 🚀 and 日本語", "multi\nline\r\ntext", "nul\x00inside", "sep\u2028\u2029\u0085", "\t tabs "]
    response = await alice.post("/api/agents/a1/logs", json=messages)
    assert response.status_code == 200
    assert [line["message"] for line in await lines_of(alice, "a1")] == messages
    text = await alice.get("/api/agents/a1/logs", params={"format": "ndjson"})
    assert [json.loads(row)["message"] for row in text.text.splitlines()] == messages


# ---- answers and seq assignment ------------------------------------------------------------------


async def test_seqs_continue_across_requests(alice: httpx.AsyncClient) -> None:
    first = await alice.post("/api/agents/a1/logs", json=["a", "b"])
    second = await alice.post("/api/agents/a1/logs", json="c")
    assert first.json() == {"accepted": 2, "first_seq": 1, "last_seq": 2}
    assert second.json() == {"accepted": 1, "first_seq": 3, "last_seq": 3}
    agent = (await alice.get("/api/agents/a1")).json()
    assert (agent["line_count"], agent["last_seq"], agent["status"], agent["owner"]) == (3, 3, "running", "alice")


@pytest.mark.slow  # a thousand requests from 20 clients
async def test_concurrent_ingest_gets_gap_free_disjoint_seqs(server: RunningServer) -> None:
    clients, requests_each = 20, 50
    ranges: list[tuple[int, int, list[str]]] = []

    async def writer(number: int) -> None:
        async with server.client("alice") as client:
            for request in range(requests_each):
                messages = [f"c{number}-r{request}-{k}" for k in range(1 + (number + request) % 3)]
                response = await client.post("/api/agents/busy/logs", json=messages)
                assert response.status_code == 200, response.text
                answer = response.json()
                assert answer["accepted"] == len(messages)
                assert answer["last_seq"] - answer["first_seq"] + 1 == len(messages)
                ranges.append((answer["first_seq"], answer["last_seq"], messages))

    await asyncio.wait_for(asyncio.gather(*(writer(n) for n in range(clients))), 60)
    ranges.sort()
    total = sum(len(messages) for _, _, messages in ranges)
    expected_next = 1
    for first, last, _ in ranges:
        assert first == expected_next
        expected_next = last + 1
    assert expected_next == total + 1
    async with server.client("alice") as alice:
        stored = await lines_of(alice, "busy")
    assert [line["seq"] for line in stored] == list(range(1, total + 1))
    by_seq = {line["seq"]: line["message"] for line in stored}
    for first, _, messages in ranges:
        assert [by_seq[first + k] for k in range(len(messages))] == messages


# ---- atomic batches and bad input ----------------------------------------------------------------


async def test_bad_line_rejects_whole_batch_and_writes_nothing(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json="before")
    batch = [{"message": "1"}, {"message": "2"}, {"message": 3}, {"message": "4"}, {"message": "5"}]
    response = await alice.post("/api/agents/a1/logs", json=batch)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_line"
    assert "line 3" in error["message"] and "'message' must be a string" in error["message"]
    assert [line["message"] for line in await lines_of(alice, "a1")] == ["before"]
    after = await alice.post("/api/agents/a1/logs", json="after")
    assert after.json()["first_seq"] == 2


async def test_bad_line_in_first_request_does_not_create_agent(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents/fresh/logs", json=[{"message": "ok"}, {"level": "INFO"}])
    assert response.status_code == 400
    assert "line 2" in error_of(response)["message"] and "missing 'message'" in error_of(response)["message"]
    assert (await alice.get("/api/agents/fresh")).status_code == 404


async def test_bad_ndjson_line_is_named_by_its_text_line_number(alice: httpx.AsyncClient) -> None:
    body = b'{"message": "1"}\n{"message": "2"}\n{"message": \n{"message": "4"}\n'
    response = await alice.post("/api/agents/a1/logs", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_json" and "line 3" in error["message"]
    assert (await alice.get("/api/agents/a1")).status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"[]", "application/json"), (b"", "application/json"), (b"", "text/plain"), (b"\n\n", "application/x-ndjson")],
    ids=["empty-array", "empty-json", "empty-text", "blank-ndjson"],
)
async def test_empty_batch_is_400(alice: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    response = await alice.post("/api/agents/a1/logs", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "empty_batch" and "no lines" in error["message"]


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'{"message": "unterminated', "invalid_json", "not valid JSON"),
        (b'{"message": "x"} trailing', "invalid_json", "not valid JSON"),
        (b'{"message": "bad \xff byte"}', "invalid_utf8", "not valid UTF-8"),
        (b'{"message": "x", "ts": NaN}', "invalid_json", "NaN"),
        (b'{"message": "x", "ts": Infinity}', "invalid_json", "Infinity"),
        (b'{"message": ["not", "a", "string"]}', "invalid_line", "'message' must be a string"),
        (b'{"message": "x", "fields": [1, 2]}', "invalid_line", "'fields' must be a JSON object"),
        (b'{"message": "x", "source": 7}', "invalid_line", "'source' must be a string"),
        (b'{"message": "x", "ts": true}', "invalid_line", "ts must be"),
        (b'{"message": "x", "ts": "yesterday"}', "invalid_line", "ISO 8601"),
        (b'{"message": "x", "level": -5}', "invalid_line", "negative"),
        (b'{"message": "x", "level": 1e400}', "invalid_line", "finite"),
        (b'{"message": "x", "ts": 1e400}', "invalid_line", "finite"),
        (b'{"message": "x", "ts": "1e400"}', "invalid_line", "finite"),
        (b'{"message": "x", "fields": {"n": 1e400}}', "invalid_line", "'fields' holds a number too large for JSON"),
        (b'{"message": "x", "size": -1e400}', "invalid_line", "'fields' holds a number too large for JSON"),
        (b'{"message": "x", "ts": 1' + b"0" * 40 + b"}", "invalid_line", "too large"),
        (b'{"message": "x", "ts": 1e25}', "invalid_line", "out of range"),
        (b'{"message": "x", "ts": -86400}', "invalid_line", "out of range"),
        (b'{"message": "x", "ts": "0001-01-01T00:00:00Z"}', "invalid_line", "out of range"),
        (b'{"message": "\\ud800 lone surrogate"}', "invalid_line", "surrogate"),
        (b'{"message": "x", "source": "\\udc00"}', "invalid_line", "surrogate"),
        (b'{"message": "x", "fields": {"k": "\\ud83d"}}', "invalid_line", "surrogate"),
        (b"[1, 2]", "invalid_line", "expected an object or a string"),
        (b"42", "invalid_line", "expected an object or a string"),
    ],
)
async def test_malformed_body_is_400_with_clear_message(
    alice: httpx.AsyncClient, body: bytes, code: str, words: str
) -> None:
    response = await alice.post("/api/agents/a1/logs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code
    assert words in error["message"]
    assert (await alice.get("/api/agents/a1")).status_code == 404
    still = await alice.post("/api/agents/a2/logs", json="the server keeps serving")
    assert still.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
async def test_deeply_nested_json_is_400_and_server_keeps_serving(alice: httpx.AsyncClient, content_type: str) -> None:
    response = await alice.post("/api/agents/a1/logs", content=b"[" * 100_000, headers={"Content-Type": content_type})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]
    ok = await alice.post("/api/agents/a1/logs", json="still serving")
    assert ok.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}


async def test_deeply_nested_fields_object_is_400(alice: httpx.AsyncClient) -> None:
    nested = '{"message": "x", "fields": {"a": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    response = await alice.post(
        "/api/agents/a1/logs", content=nested.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "nested too deeply" in error_of(response)["message"]
    assert (await alice.post("/api/agents/a1/logs", json="ok")).status_code == 200


@pytest.mark.parametrize(
    "agent_id",
    ["x" * 129, "has%20space", "semi%3Bcolon", "%C3%A9t%C3%A9"],
    ids=["too-long", "space", "semicolon", "accent"],
)
async def test_bad_agent_id_is_400(alice: httpx.AsyncClient, agent_id: str) -> None:
    response = await alice.post(f"/api/agents/{agent_id}/logs", json="m")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_agent_id" and "1-128 characters" in error["message"]


async def test_longest_and_punctuated_agent_ids_are_accepted(alice: httpx.AsyncClient) -> None:
    for agent_id in ["x" * 128, "run.2024-01-01T10:00:00_a-b"]:
        response = await alice.post(f"/api/agents/{agent_id}/logs", json="m")
        assert response.status_code == 200, response.text
        assert (await alice.get(f"/api/agents/{agent_id}")).json()["id"] == agent_id


# ---- finished agents -----------------------------------------------------------------------------


@pytest.mark.parametrize("final", ["completed", "failed"])
async def test_ingest_into_finished_agent_is_409(alice: httpx.AsyncClient, final: str) -> None:
    await alice.post("/api/agents/a1/logs", json="work")
    assert (await alice.patch("/api/agents/a1", json={"status": final})).status_code == 200
    response = await alice.post("/api/agents/a1/logs", json="too late")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "agent_finished" and final in error["message"]
    assert [line["message"] for line in await lines_of(alice, "a1")] == ["work"]


async def test_finished_status_is_final(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json="work")
    assert (await alice.patch("/api/agents/a1", json={"status": "completed"})).status_code == 200
    back = await alice.patch("/api/agents/a1", json={"status": "running"})
    assert back.status_code == 409
    assert error_of(back)["code"] == "agent_finished"
    other = await alice.patch("/api/agents/a1", json={"status": "failed"})
    assert other.status_code == 409
    assert "completed" in error_of(other)["message"]
    again = await alice.patch("/api/agents/a1", json={"status": "completed"})
    assert again.status_code == 200
    assert again.json()["status"] == "completed"


# ---- Idempotency-Key -----------------------------------------------------------------------------


async def test_retry_with_same_idempotency_key_writes_once(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json="first")
    headers = {"Idempotency-Key": "batch-7"}
    first = await alice.post("/api/agents/a1/logs", json=["x", "y"], headers=headers)
    retry = await alice.post("/api/agents/a1/logs", json=["x", "y"], headers=headers)
    assert first.json() == {"accepted": 2, "first_seq": 2, "last_seq": 3}
    assert retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert [line["message"] for line in await lines_of(alice, "a1")] == ["first", "x", "y"]
    fresh = await alice.post("/api/agents/a1/logs", json="z", headers={"Idempotency-Key": "batch-8"})
    assert fresh.json() == {"accepted": 1, "first_seq": 4, "last_seq": 4}


async def test_retry_after_agent_finished_still_gets_first_answer(alice: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "last-batch"}
    first = await alice.post("/api/agents/a1/logs", json=["done"], headers=headers)
    await alice.patch("/api/agents/a1", json={"status": "completed"})
    retry = await alice.post("/api/agents/a1/logs", json=["done"], headers=headers)
    assert retry.status_code == 200
    assert retry.json() == first.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    other = await alice.post("/api/agents/a1/logs", json=["new"], headers={"Idempotency-Key": "another"})
    assert other.status_code == 409


async def test_idempotency_key_is_per_agent(alice: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "same"}
    one = await alice.post("/api/agents/a1/logs", json=["a", "b"], headers=headers)
    two = await alice.post("/api/agents/a2/logs", json=["c"], headers=headers)
    assert one.json() == {"accepted": 2, "first_seq": 1, "last_seq": 2}
    assert two.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    assert [line["message"] for line in await lines_of(alice, "a2")] == ["c"]


async def test_concurrent_requests_with_same_key_write_once(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/a1/logs", json="start")
        headers = {"Idempotency-Key": "race"}
        answers = await asyncio.gather(
            *(alice.post("/api/agents/a1/logs", json=["p", "q"], headers=headers) for _ in range(8))
        )
        assert {response.status_code for response in answers} == {200}
        assert {json.dumps(response.json()) for response in answers} == {
            json.dumps({"accepted": 2, "first_seq": 2, "last_seq": 3})
        }
        assert [line["message"] for line in await lines_of(alice, "a1")] == ["start", "p", "q"]


async def test_rejected_request_does_not_burn_its_idempotency_key(alice: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k1"}
    bad = await alice.post("/api/agents/a1/logs", json=[{"message": 1}], headers=headers)
    assert bad.status_code == 400
    good = await alice.post("/api/agents/a1/logs", json=["fixed"], headers=headers)
    assert good.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}


async def test_overlong_idempotency_key_is_400(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents/a1/logs", json="m", headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_idempotency_key" and "1-255" in error["message"]


@pytest.mark.slow  # 1,200 commits of 24 KB lines
async def test_many_small_commits_keep_the_wal_file_small(server: RunningServer, alice: httpx.AsyncClient) -> None:
    # Small batches are committed on the event loop with SQLite's auto-checkpoint off, and checkpoint passes
    # beside the commits rarely find the WAL all copied: the store must still start it over, or it grows with
    # every commit. The messages alone (29 MB) are more than the WAL may hold.
    message = "x" * 24_000

    async def post_many(writer: int) -> None:
        for n in range(150):
            response = await alice.post("/api/agents/walsize/logs", json={"message": f"{writer}-{n} {message}"})
            assert response.status_code == 200

    await asyncio.gather(*(post_many(w) for w in range(8)))
    assert len(await lines_of(alice, "walsize", limit=10000)) == 1200
    wal = server.db.with_name(server.db.name + "-wal")
    assert wal.stat().st_size < WAL_RESTART_BYTES + 8 * 1024 * 1024, f"the WAL grew to {wal.stat().st_size:,} bytes"


# ---- the ingest answer is like every other answer (it is read without a request handler) ----------------


async def test_ingest_takes_the_token_from_the_query_or_the_cookie_and_masks_it_in_the_access_log(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(**{"server.access_log": True})
    token = server.token("alice")
    with caplog.at_level(logging.INFO, logger="sentra.access"):
        async with httpx.AsyncClient(base_url=server.url) as anonymous:
            by_query = await anonymous.post("/api/agents/q1/logs", params={"token": token}, json={"message": "a"})
            refused = await anonymous.post("/api/agents/q1/logs", params={"token": " "}, json={"message": "b"})
            bad_query = await anonymous.post("/api/agents/q1/logs?token=%ff", json={"message": "c"})
        async with httpx.AsyncClient(base_url=server.url, cookies={"sentra_token": token}) as browser:
            by_cookie = await browser.post("/api/agents/q1/logs", json={"message": "d"})
    assert by_query.status_code == 200 and by_cookie.status_code == 200
    assert refused.status_code == 401 and error_of(refused)["code"] == "not_authenticated"
    assert bad_query.status_code == 400 and error_of(bad_query)["message"] == "Invalid unicode in token: b'\\xff'"
    access = [record.getMessage() for record in caplog.records if record.name == "sentra.access"]
    assert any("200 POST /api/agents/q1/logs?token=*** (127.0.0.1)" in line for line in access), access
    assert all(token not in line for line in access)
    async with server.client("alice") as alice:
        assert [line["message"] for line in await lines_of(alice, "q1")] == ["a", "d"]


async def test_ingest_answers_carry_the_security_and_cors_headers_of_every_answer(start_server: ServerFactory) -> None:
    server = await start_server(**{"server.cors_origins": ["https://viewer.example"]})
    async with server.client("alice") as alice:
        for origin in ("https://viewer.example", "https://evil.example"):
            ok = await alice.post("/api/agents/c1/logs", json={"message": "hi"}, headers={"Origin": origin})
            refused = await alice.post("/api/agents/c1/logs", content=b"", headers={"Origin": origin})
            for answer in (ok, refused):
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["referrer-policy"] == "no-referrer"
                assert answer.headers["content-type"] == "application/json; charset=utf-8"
                assert answer.headers.get("access-control-allow-origin") == (
                    origin if origin == "https://viewer.example" else None
                )
            assert ok.status_code == 200 and refused.status_code == 400
        bad_path = await alice.post("/api/agents/%ff/logs", json={"message": "x"})
    assert bad_path.status_code == 400
    assert error_of(bad_path) == {"code": "bad_request", "message": "Invalid unicode in agent_id: b'\\xff'"}


def test_ingest_answer_text_is_what_json_dumps_writes() -> None:
    for result in (
        AppendResult(1, 1, 1),
        AppendResult(0, None, None),
        AppendResult(20000, 12_345_678_901, 12_345_698_900, replayed=True),
    ):
        assert result.json_text() == json.dumps(result.to_json())
