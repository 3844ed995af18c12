"""POST /v1/logs, OpenTelemetry logs in: the official OpenTelemetry SDK and OTLP/HTTP exporter as the agent (a
real Python `logging` logger, inside and outside a span), OTLP/JSON bodies as the browser exporter sends them, and
what a user reads back through history: agents, levels, times, messages, sources, fields, trace ids."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from conftest import RunningServer, ServerFactory, error_of, make_token, open_stream, read_lines, set_status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Tracer
from otlp_bodies import (
    GZIP,
    JSON,
    PROTOBUF,
    agent_json,
    export,
    gzipped,
    protobuf_body,
    protobuf_request,
    record_json,
    request_json,
    resource_json,
)
from otlp_sdk import log_with_sdk
from prometheus_client.parser import text_string_to_metric_families

from sentra.errors import Forbidden
from sentra.lines import NewLine, NewLines
from sentra.otlp import agent_batches, decode_request
from sentra.storage.appends import AppendGroup, AppendJob
from sentra.storage.base import Storage
from sentra.storage.sqlite import Store

T = TypeVar("T")
TRACE_ID = "5B8EFFF798038103D269B633813FC60C"  # the specification's example, upper case: hex is case-insensitive
SPAN_ID = "EEE19B7EC3C1B174"


# ---- the agent: the official SDK, built locally (no global provider) and shut down after ------------------------


async def sdk_agent(server: RunningServer, resource: dict[str, Any], actions: Callable[..., T], **kw: Any) -> T:
    """log_with_sdk as alice, off the event loop the server runs on."""
    return await asyncio.to_thread(log_with_sdk, server.url, server.token("alice"), resource, actions, **kw)


# ---- what a user reads back ---------------------------------------------------------------------------------


async def history(client: httpx.AsyncClient, agent_id: str) -> list[dict[str, Any]]:
    """Every stored line of an agent."""
    response = await client.get(f"/api/agents/{agent_id}/logs")
    assert response.status_code == 200, response.text
    return list(response.json()["lines"])


async def agent_ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """The ids of the caller's agents."""
    response = await client.get("/api/agents", params=params)
    assert response.status_code == 200, response.text
    return [agent["id"] for agent in response.json()["agents"]]


def admin(server: RunningServer) -> httpx.AsyncClient:
    """A client with an admin token: every agent, and /metrics."""
    client = server.client(None)
    client.headers.update(server.headers("root", scope="admin"))
    return client


async def all_agent_ids(server: RunningServer) -> set[str]:
    """Every agent of every user (an admin's list)."""
    async with admin(server) as root:
        return set(await agent_ids(root))


async def refusals(client: httpx.AsyncClient) -> dict[str, float]:
    """sentra_ingest_rejected from /metrics, by status."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    for family in text_string_to_metric_families(answer.text):
        if family.name == "sentra_ingest_rejected":
            return {s.labels["status"]: s.value for s in family.samples if s.name.endswith("_total")}
    raise AssertionError("sentra_ingest_rejected is not exported")


# ---- the official SDK as the agent ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, Compression.Gzip, Compression.Deflate], ids=["plain", "gzip", "deflate"])
async def test_python_logging_through_the_sdk_reads_back_with_levels_source_fields_and_trace_ids(
    server: RunningServer, alice: httpx.AsyncClient, compression: Compression | None
) -> None:
    resource = {"service.name": "checkout", "service.version": "1.2.3", "deployment.environment": "staging"}

    def run(logger: logging.Logger, tracer: Tracer) -> tuple[str, str]:
        logger.info("planning %d steps", 3)
        with tracer.start_as_current_span("tool call") as span:
            logger.warning("search took long", extra={"http.status": 500, "tool": "search", "ratio": 0.25})
            context = span.get_span_context()
        logger.debug({"tool": "search", "hits": 3})
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    trace_id, span_id = await sdk_agent(server, resource, run, compression=compression)

    # The SDK gives each process run its own service.instance.id: that is the agent, named by service.name.
    [agent_id] = await agent_ids(alice, label="service.name=checkout")
    agent = (await alice.get(f"/api/agents/{agent_id}")).json()
    assert agent_id == Resource.create({}).attributes["service.instance.id"]
    assert (agent["name"], agent["owner"], agent["status"]) == ("checkout", "alice", "running")
    assert agent["labels"] == resource
    outside, inside, structured = await history(alice, agent_id)
    assert (outside["level"], outside["message"], outside["source"]) == ("INFO", "planning 3 steps", "agent.planner")
    assert "trace_id" not in outside["fields"] and "span_id" not in outside["fields"]
    assert (inside["level"], inside["message"]) == ("WARNING", "search took long")
    assert (inside["fields"]["trace_id"], inside["fields"]["span_id"]) == (trace_id, span_id)
    assert (inside["fields"]["http.status"], inside["fields"]["tool"], inside["fields"]["ratio"]) == (
        500,
        "search",
        0.25,
    )
    assert inside["fields"]["code.function.name"] == "run"
    assert structured["level"] == "DEBUG"
    assert structured["fields"]["body"] == {"tool": "search", "hits": 3}
    assert structured["message"] == '{"tool": "search", "hits": 3}'
    assert abs(outside["ts"] - time.time()) < 60


async def test_exporter_configured_by_the_environment_alone_as_the_readme_says(
    server: RunningServer, alice: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{server.token('alice')}")
    resource = {"sentra.agent.id": "env-configured", "service.name": "nightly"}

    def run(logger: logging.Logger, tracer: Tracer) -> None:
        for number in range(1, 4):
            logger.error("attempt %d failed", number)

    # The exporter is built with no argument, after the variables are set: it appends /v1/logs itself.
    await asyncio.to_thread(
        lambda: log_with_sdk("unused", "unused", resource, run, batch=True, exporter=OTLPLogExporter())
    )
    lines = await history(alice, "env-configured")
    assert [(line["level"], line["message"]) for line in lines] == [("ERROR", f"attempt {n} failed") for n in (1, 2, 3)]


async def test_exporter_does_not_retry_a_record_the_server_refuses(server: RunningServer) -> None:
    def run(logger: logging.Logger, tracer: Tracer) -> None:
        logger.info("never stored")

    async with admin(server) as root:
        before = await refusals(root)
        await sdk_agent(server, {"sentra.agent.id": "has space"}, run)
        # One 400 (an id Sentra cannot take), and the exporter gave up at once: no second attempt.
        assert await refusals(root) == {**before, "400": before.get("400", 0) + 1}
    assert await all_agent_ids(server) == set()


@pytest.mark.slow  # the exporter waits out a Retry-After of a second
async def test_exporter_retries_after_429_and_every_record_is_stored(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.ingest_rate": 2})

    def run(logger: logging.Logger, tracer: Tracer) -> None:
        for number in range(1, 4):
            logger.info("step %d", number)  # the third is refused once, with Retry-After: 1, then sent again

    started = time.monotonic()
    await sdk_agent(server, {"sentra.agent.id": "throttled"}, run)
    assert time.monotonic() - started >= 0.5
    async with server.client("alice") as alice, admin(server) as root:
        assert [line["message"] for line in await history(alice, "throttled")] == ["step 1", "step 2", "step 3"]
        assert (await refusals(root)).get("429") == 1


# ---- OTLP/JSON as the browser exporter sends it -----------------------------------------------------------


async def test_otlp_json_as_a_browser_sends_it_is_stored_and_answered_in_json(alice: httpx.AsyncClient) -> None:
    record = record_json(
        "clicked buy",
        timeUnixNano="1700000000123456789",  # 64-bit integers come as strings
        observedTimeUnixNano="1700000001000000000",
        severityNumber=9,
        severityText="INFO",
        traceId=TRACE_ID,
        spanId=SPAN_ID,
        flags=1,
        droppedAttributesCount=0,
        attributes={"page.path": "/cart", "cart.items": 3},
        aFieldFromAFutureVersion={"ignored": True},
    )
    body = request_json(resource_json({"service.name": "web-shop", "browser.brand": "x"}, record, scope="shop-ui"))
    body["resourceLogs"][0]["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
    response = await export(alice, body)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {}
    [line] = await history(alice, "web-shop")
    assert line["ts"] == pytest.approx(1700000000.123457, abs=1e-6)
    assert (line["level"], line["message"], line["source"]) == ("INFO", "clicked buy", "shop-ui")
    assert line["fields"] == {
        "page.path": "/cart",
        "cart.items": 3,
        "trace_id": TRACE_ID.lower(),
        "span_id": SPAN_ID.lower(),
    }


async def test_protobuf_is_answered_with_an_export_logs_service_response_in_protobuf(alice: httpx.AsyncClient) -> None:
    response = await export(alice, protobuf_body("pb-agent", 3))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/x-protobuf"
    answer = ExportLogsServiceResponse()
    answer.ParseFromString(response.content)
    assert not answer.HasField("partial_success")
    assert [line["message"] for line in await history(alice, "pb-agent")] == ["record 1", "record 2", "record 3"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_of_both_encodings_are_stored(alice: httpx.AsyncClient, encoding: str) -> None:
    compress = gzipped if encoding == "gzip" else zlib.compress
    headers = {"Content-Encoding": encoding}
    assert (await export(alice, compress(protobuf_body("zipped", 2)), headers)).status_code == 200
    json_body = json.dumps(agent_json("zipped", "third")).encode()
    response = await export(alice, compress(json_body), {**JSON, **headers})
    assert response.status_code == 200, response.text
    assert [line["message"] for line in await history(alice, "zipped")] == ["record 1", "record 2", "third"]


async def test_empty_request_succeeds_and_stores_nothing(server: RunningServer, alice: httpx.AsyncClient) -> None:
    assert (await export(alice, b"")).status_code == 200
    response = await export(alice, request_json(resource_json({"service.name": "idle"})))
    assert (response.status_code, response.json()) == (200, {})
    assert await all_agent_ids(server) == set()


# ---- the mapping, bullet by bullet ---------------------------------------------------------------------------


async def test_level_from_severity_number_ranges_else_severity_text_else_info(alice: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"severityNumber": 1}, "DEBUG"),
        ({"severityNumber": 8}, "DEBUG"),
        ({"severityNumber": 9}, "INFO"),
        ({"severityNumber": 12}, "INFO"),
        ({"severityNumber": 13, "severityText": "ERROR"}, "WARNING"),  # the number wins
        ({"severityNumber": 16}, "WARNING"),
        ({"severityNumber": 17}, "ERROR"),
        ({"severityNumber": 20}, "ERROR"),
        ({"severityNumber": 21}, "CRITICAL"),
        ({"severityNumber": 24}, "CRITICAL"),
        ({"severityText": "warn"}, "WARNING"),
        ({"severityText": "Error"}, "ERROR"),
        ({"severityText": "FATAL"}, "CRITICAL"),
        ({"severityText": "TRACE"}, "DEBUG"),
        ({"severityText": "notice"}, "INFO"),
        ({}, "INFO"),
    ]
    records = [record_json(f"case {n}", **severity) for n, (severity, _) in enumerate(cases)]
    assert (
        await export(alice, request_json(resource_json({"sentra.agent.id": "levels"}, *records)))
    ).status_code == 200
    assert [line["level"] for line in await history(alice, "levels")] == [level for _, level in cases]


async def test_time_from_time_else_observed_time_else_receipt(alice: httpx.AsyncClient) -> None:
    records = [
        record_json("both", timeUnixNano="1700000000000000000", observedTimeUnixNano="1700000005000000000"),
        record_json("observed only", observedTimeUnixNano=1700000005000000000),  # a number works as well
        record_json("neither"),
    ]
    sent = time.time()
    assert (await export(alice, request_json(resource_json({"sentra.agent.id": "times"}, *records)))).status_code == 200
    both, observed, neither = await history(alice, "times")
    assert (both["ts"], observed["ts"]) == (1700000000.0, 1700000005.0)
    assert sent - 1 <= neither["ts"] <= time.time() + 1


async def test_fields_keep_every_attribute_type_and_nonzero_ids(alice: httpx.AsyncClient) -> None:
    attributes = {
        "http.status": 500,
        "ratio": 0.5,
        "ok": False,
        "user": "u-1",
        "tags": ["a", 2, True],
        "request": {"method": "GET", "retries": 2, "nested": {"deep": [1.5]}},
        "raw": b"\x00\xffsentra",
    }
    records = [
        record_json("typed", attributes=attributes, spanId=SPAN_ID, traceId="0" * 32),
        record_json("zeros", traceId="0" * 32, spanId="0" * 16),
    ]
    assert (await export(alice, request_json(resource_json({"sentra.agent.id": "typed"}, *records)))).status_code == 200
    typed, zeros = await history(alice, "typed")
    assert typed["fields"] == {
        **attributes,
        "raw": "AP9zZW50cmE=",  # bytes as base64, as protobuf's JSON writes them
        "span_id": SPAN_ID.lower(),  # a trace id of all zeros is no trace id
    }
    assert zeros["fields"] == {}


async def test_a_body_that_is_not_a_string_is_kept_in_fields_and_shown_as_json(alice: httpx.AsyncClient) -> None:
    bodies: list[Any] = [{"step": 3, "tool": "search"}, ["a", 1], 42, 2.5, True, b"\x01\x02"]
    records = [record_json(body, attributes={"k": "v"}) for body in bodies]
    records.append(record_json(None))
    assert (
        await export(alice, request_json(resource_json({"sentra.agent.id": "bodies"}, *records)))
    ).status_code == 200
    lines = await history(alice, "bodies")
    assert [line["message"] for line in lines] == [
        '{"step": 3, "tool": "search"}',
        '["a", 1]',
        "42",
        "2.5",
        "true",
        '"AQI="',
        "",
    ]
    assert [line["fields"].get("body") for line in lines] == [*bodies[:5], "AQI=", None]
    assert all(line["fields"]["k"] == "v" for line in lines[:-1])


async def test_source_is_the_instrumentation_scope_name(alice: httpx.AsyncClient) -> None:
    resource = {"sentra.agent.id": "scoped"}
    body = request_json(resource_json(resource, record_json("a"), scope="agents.tools.search"))
    body["resourceLogs"][0]["scopeLogs"].append({"logRecords": [record_json("b")]})  # no scope at all
    assert (await export(alice, body)).status_code == 200
    assert [line["source"] for line in await history(alice, "scoped")] == ["agents.tools.search", ""]


async def test_agent_from_sentra_agent_id_else_service_instance_id_else_service_name(alice: httpx.AsyncClient) -> None:
    common = {"service.version": "2.0", "deployment.environment": "prod"}
    body = request_json(
        resource_json({"sentra.agent.id": "run-7", "service.instance.id": "i-1", "service.name": "a", **common},
                      record_json("by sentra.agent.id")),
        resource_json({"service.instance.id": "i-2", "service.name": "b", **common}, record_json("by instance")),
        resource_json({"service.name": "c", **common}, record_json("by service.name")),
        resource_json({"service.name": "c"}, record_json("same agent, second resource")),
    )  # fmt: skip
    assert (await export(alice, body)).status_code == 200
    expected = {"run-7": ("a", ["by sentra.agent.id"]), "i-2": ("b", ["by instance"])}
    expected["c"] = ("c", ["by service.name", "same agent, second resource"])
    for agent_id, (name, messages) in expected.items():
        agent = (await alice.get(f"/api/agents/{agent_id}")).json()
        assert (agent["name"], agent["owner"]) == (name, "alice")
        assert agent["labels"] == {"service.name": name, **common}
        assert [line["message"] for line in await history(alice, agent_id)] == messages


async def test_lines_reach_an_open_stream_and_the_ingest_metrics(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    async with open_stream(alice, "/api/agents/live/logs/stream", wait=1) as stream:
        assert stream.response.status_code == 200
        assert (await export(alice, agent_json("live", "one", "two"))).status_code == 200
        events = await read_lines(stream, 2)
    assert [line["message"] for event in events for line in event.json()["lines"]] == ["one", "two"]
    async with admin(server) as root:
        metrics = (await root.get("/metrics")).text
    assert "sentra_lines_ingested_total 2.0" in metrics


# ---- refusals, which store nothing ---------------------------------------------------------------------------


async def test_an_undecodable_body_is_a_400_the_client_must_not_retry(server: RunningServer) -> None:
    not_hex = agent_json("a", "x")
    not_hex["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["traceId"] = "xyz"
    bodies: list[tuple[bytes, dict[str, str], str]] = [
        (b"\xff\xff\xff\xff", PROTOBUF, "invalid_otlp"),
        (b"{oops", JSON, "invalid_json"),
        (b"[1, 2]", JSON, "invalid_otlp"),
        (b'{"resourceLogs": 7}', JSON, "invalid_otlp"),
        (json.dumps(not_hex).encode(), JSON, "invalid_otlp"),
        (b"not gzip at all", {**PROTOBUF, **GZIP}, "invalid_encoding"),
        (gzipped(protobuf_body("a", 3))[:-10], {**PROTOBUF, **GZIP}, "invalid_encoding"),
    ]  # fmt: skip
    async with server.client("alice") as alice:
        for body, headers, code in bodies:
            response = await alice.post("/v1/logs", content=body, headers=headers)
            assert response.status_code == 400, (body, response.text)
            assert error_of(response)["code"] == code
    assert await all_agent_ids(server) == set()


async def test_an_agent_id_that_cannot_be_is_a_400_naming_the_attribute(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        body = request_json(
            resource_json({"service.name": "fine"}, record_json("would be stored")),
            resource_json({"service.name": "my agent"}, record_json("x")),
        )
        error = error_of(await export(alice, body))
        assert error["code"] == "invalid_agent_id" and "service.name" in error["message"], error
        error = error_of(await export(alice, request_json(resource_json({"host.name": "h"}, record_json("x")))))
        assert error["code"] == "missing_agent_id" and "sentra.agent.id" in error["message"], error
    assert await all_agent_ids(server) == set()


async def test_no_token_a_bad_token_and_a_read_only_token_are_refused(server: RunningServer) -> None:
    body = agent_json("guarded", "x")
    async with server.client(None) as nobody:
        response = await export(nobody, body)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        response = await export(nobody, body, {"Authorization": "Bearer not-a-jwt"})
        assert (response.status_code, error_of(response)["code"]) == (401, "invalid_token")
        response = await export(nobody, body, {"Authorization": f"Bearer {make_token('alice', scope='logs:read')}"})
        assert (response.status_code, error_of(response)["code"]) == (403, "insufficient_scope")
    assert await all_agent_ids(server) == set()


async def refused_request_stores_nothing_for_any_agent(server: RunningServer) -> None:
    """Alice's request to her agent, a new one and bob's is refused whole (403); to a new one and her finished one
    too (409)."""
    async with server.client("alice") as alice, server.client("bob") as bob:
        assert (await export(bob, agent_json("bobs", "mine"))).status_code == 200
        assert (await export(alice, agent_json("alices", "first"))).status_code == 200
        body = request_json(
            resource_json({"sentra.agent.id": "alices"}, record_json("second")),
            resource_json({"sentra.agent.id": "brand-new"}, record_json("new")),
            resource_json({"sentra.agent.id": "bobs"}, record_json("not mine")),
        )
        response = await export(alice, body)
        assert response.status_code == 403
        assert error_of(response) == {"code": "not_owner", "message": "agent 'bobs' belongs to another user"}
        await set_status(alice, "alices", "completed")
        finished = request_json(
            resource_json({"sentra.agent.id": "brand-new"}, record_json("new")),
            resource_json({"sentra.agent.id": "alices"}, record_json("late")),
        )
        response = await export(alice, finished)
        assert (response.status_code, error_of(response)["code"]) == (409, "agent_finished")
        assert [line["message"] for line in await history(alice, "alices")] == ["first"]
        assert [line["message"] for line in await history(bob, "bobs")] == ["mine"]
    assert await all_agent_ids(server) == {"alices", "bobs"}


async def test_one_resource_naming_another_users_agent_stores_nothing_for_any(start_server: ServerFactory) -> None:
    await refused_request_stores_nothing_for_any_agent(await start_server())


@pytest.mark.slow  # PostgreSQL
async def test_one_resource_naming_another_users_agent_stores_nothing_on_postgresql(
    pg_url: str, start_server: ServerFactory
) -> None:
    await refused_request_stores_nothing_for_any_agent(await start_server(**{"storage.url": pg_url}))


async def test_bodies_over_the_limits_are_413_and_400_and_store_nothing(start_server: ServerFactory) -> None:
    limits = {"limits.max_body_size": 64 * 1024, "limits.max_lines_per_request": 5, "limits.max_line_size": 1000}
    server = await start_server(**limits)
    async with server.client("alice") as alice:
        response = await export(alice, b"\x0a" * (64 * 1024 + 1))
        assert (response.status_code, error_of(response)["code"]) == (413, "body_too_large")
        # 10 MB of one byte gzips to about 10 KB: under the body limit, far over it once inflated.
        bomb = gzipped(b"\x0a" * 10_000_000)
        assert len(bomb) < 64 * 1024
        response = await export(alice, bomb, GZIP)
        assert (response.status_code, error_of(response)["code"]) == (413, "body_too_large")
        response = await export(alice, protobuf_body("limited", 6))
        assert (response.status_code, error_of(response)["code"]) == (413, "too_many_lines")
        long = request_json(resource_json({"sentra.agent.id": "limited"}, record_json("ok"), record_json("x" * 2000)))
        response = await export(alice, long)
        assert (response.status_code, error_of(response)["code"]) == (400, "invalid_line")
        assert error_of(response)["message"].startswith("log record 2: line is 2000 bytes")
        assert (await export(alice, protobuf_body("limited", 5))).status_code == 200
        assert [line["message"] for line in await history(alice, "limited")] == [f"record {n}" for n in range(1, 6)]


async def test_other_content_types_and_encodings_are_415(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        for headers in (
            {"Content-Type": "text/plain"},
            {"Content-Type": "application/grpc"},
            {**JSON, "Content-Encoding": "br"},
        ):
            response = await alice.post("/v1/logs", content=b"{}", headers=headers)
            assert response.status_code == 415, response.text
            error = error_of(response)
            assert error["code"] in ("unsupported_media_type", "unsupported_encoding")
            assert "application/x-protobuf" in error["message"] or "gzip" in error["message"]
    assert await all_agent_ids(server) == set()


# ---- the writer: a request to several agents is one group, stored whole or not at all --------------------------


async def group_refused_beside_a_racing_first_line(store: Storage) -> None:
    """Bob's first line creates "raced" in the same batch as alice's group (fresh, raced): the writer refuses the
    whole group, and "fresh" is not created."""
    line = NewLines.of([NewLine(time.time(), "INFO", "x", "", {})])
    group = AppendGroup(("fresh", "raced"))
    # Queued without a pause in between: one batch, in this order.
    queued = [
        store.queue_append(AppendJob("raced", "bob", False, line, None, "", {})),
        store.queue_append(AppendJob("fresh", "alice", False, line, None, "", {}, group)),
        store.queue_append(AppendJob("raced", "alice", False, line, None, "", {}, group)),
        store.queue_append(AppendJob("other", "alice", False, line, None, "", {})),
    ]
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(result).__name__ for result in results] == ["AppendResult", "Forbidden", "Forbidden", "AppendResult"]
    assert isinstance(results[1], Forbidden) and "'raced'" in results[1].message
    assert await store.get_agent("fresh") is None
    assert sorted(agent.id for agent in await store.list_agents(None)) == ["other", "raced"]


async def test_a_group_refused_by_the_writer_stores_nothing_even_beside_a_racing_first_line(tmp_path: Path) -> None:
    store = Store(tmp_path / "group.db")
    await store.open()
    try:
        await group_refused_beside_a_racing_first_line(store)
    finally:
        await store.close()


@pytest.mark.slow  # PostgreSQL
async def test_a_group_refused_by_the_postgresql_writer_stores_nothing_even_beside_a_racing_first_line(
    pg_url: str,
) -> None:
    from sentra.storage.postgres import PostgresStore

    store = PostgresStore(pg_url)
    await store.open()
    try:
        await group_refused_beside_a_racing_first_line(store)
    finally:
        await store.close()


async def test_a_group_is_committed_in_one_batch_past_the_commit_size(tmp_path: Path) -> None:
    store = Store(tmp_path / "split.db", commit_max_lines=3)
    commits: list[int] = []
    store.on_commit = lambda lines, seconds: commits.append(lines)
    await store.open()
    try:
        lines = NewLines.of([NewLine(time.time(), "INFO", f"{n}", "", {}) for n in range(2)])
        group = AppendGroup(("a", "b", "c"))
        queued = [store.queue_append(AppendJob(agent, "alice", False, lines, None, "", {}, group)) for agent in "abc"]
        queued.append(store.queue_append(AppendJob("d", "alice", False, lines, None, "", {})))
        await asyncio.gather(*queued)
    finally:
        await store.close()
    assert commits == [6, 2]


def test_protobuf_records_without_a_body_or_ids_map_to_empty_fields() -> None:
    body = protobuf_request([({"sentra.agent.id": "bare", "service.name": "s"}, [LogRecord()])])
    request = decode_request(body, "application/x-protobuf", False, 1024)
    [batch] = agent_batches(request, max_line_size=1024, max_lines=10, now=1234.5)
    [line] = batch.lines
    assert (batch.agent_id, batch.name, batch.labels) == ("bare", "s", {"service.name": "s"})
    assert (line.ts, line.level, line.message, line.source, line.fields) == (1234.5, "INFO", "", "app", {})
