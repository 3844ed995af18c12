"""OpenTelemetry logs in and MCP out on two Sentra processes sharing one PostgreSQL database and one Redis: an agent's
OTLP exporter and an AI assistant may each reach either process, and what one process took in the other shows."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from conftest import error_of, make_token, messages_of, open_stream, read_lines, seqs_of, stream_path
from mcp_client import assistant, call, open_streams, text_of, until_waiting
from opentelemetry.sdk.trace import Tracer
from otlp_bodies import export, info_records, protobuf_body, protobuf_request
from otlp_sdk import log_with_sdk
from processes import ServerProcess

pytestmark = pytest.mark.slow  # PostgreSQL, Redis and two server children

SOURCE = "agent.planner"  # the Python logger log_with_sdk logs with: the instrumentation scope, so the source


def shown(line: dict[str, Any]) -> tuple[str, str, str]:
    """(level, message, source) of a line as the API shows it."""
    return line["level"], line["message"], line["source"]


async def test_otlp_records_sent_to_one_process_stream_live_and_read_back_on_the_other(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    resource = {"sentra.agent.id": "otel-run", "service.name": "checkout", "service.version": "1.2.3"}

    def plan(logger: logging.Logger, tracer: Tracer) -> None:
        logger.info("planning %d steps", 3)

    def act(logger: logging.Logger, tracer: Tracer) -> str:
        with tracer.start_as_current_span("tool call") as span:
            logger.warning("search took long", extra={"http.status": 500})
            return f"{span.get_span_context().trace_id:032x}"

    async with b.client() as on_b:
        # The watcher on B is there before the agent exists: the exporter's first request to A creates it.
        async with open_stream(on_b, stream_path("otel-run"), wait=1) as reader:
            assert reader.response.status_code == 200
            await asyncio.to_thread(log_with_sdk, a.url, a.token(), resource, plan)
            first = await read_lines(reader, 1)
            trace_id = await asyncio.to_thread(log_with_sdk, a.url, a.token(), resource, act)
            started = time.monotonic()  # the exporter had its 200: the line is committed
            second = await read_lines(reader, 1)
            assert time.monotonic() - started < 2.0
        streamed = [line for event in first + second for line in event.json()["lines"]]
        assert [shown(line) for line in streamed] == [
            ("INFO", "planning 3 steps", SOURCE),
            ("WARNING", "search took long", SOURCE),
        ]
        assert seqs_of(first + second) == [1, 2]
        assert streamed[1]["fields"]["trace_id"] == trace_id and streamed[1]["fields"]["http.status"] == 500
        history = (await on_b.get("/api/agents/otel-run/logs")).json()["lines"]
        assert [(line["seq"], *shown(line)) for line in history] == [(line["seq"], *shown(line)) for line in streamed]
        agent = (await on_b.get("/api/agents/otel-run")).json()
        assert (agent["name"], agent["owner"], agent["line_count"]) == ("checkout", "alice", 2)
        assert agent["labels"] == {"service.name": "checkout", "service.version": "1.2.3"}


async def test_an_otlp_request_naming_another_users_agent_is_refused_whole_and_the_other_process_sees_none_of_it(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    admin = make_token("root", scope="admin")
    async with a.client("alice") as alice_on_a, a.client("bob") as bob_on_a, b.client("bob") as bob_on_b:
        assert (await export(bob_on_b, protobuf_body("bobs", 1, message="bob's own"))).status_code == 200
        async with open_stream(bob_on_b, stream_path("bobs")) as reader:
            assert messages_of(await read_lines(reader, 1)) == ["bob's own"]
            body = protobuf_request(
                [
                    ({"sentra.agent.id": "alices-new"}, info_records(2, "alice's line {}")),
                    ({"sentra.agent.id": "bobs"}, info_records(1, "not alice's to write")),
                ]
            )
            refused = await export(alice_on_a, body)
            assert refused.status_code == 403
            assert error_of(refused) == {"code": "not_owner", "message": "agent 'bobs' belongs to another user"}
            # The next line B's watcher gets is bob's next one: nothing of the refused request came before it.
            assert (await export(bob_on_a, protobuf_body("bobs", 1, message="bob's next"))).status_code == 200
            events = await read_lines(reader, 1)
            assert (messages_of(events), seqs_of(events)) == (["bob's next"], [2])
    async with b.client("alice") as alice_on_b, b.client(token=admin) as root_on_b:
        assert (await alice_on_b.get("/api/agents/alices-new")).status_code == 404
        everyone = (await root_on_b.get("/api/agents")).json()["agents"]
        assert [(agent["id"], agent["line_count"]) for agent in everyone] == [("bobs", 2)]
        history = (await root_on_b.get("/api/agents/bobs/logs")).json()["lines"]
        assert [line["message"] for line in history] == ["bob's own", "bob's next"]


async def test_an_assistant_on_one_process_lists_reads_and_searches_what_the_other_took_in(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    async with a.client() as on_a:
        plan = protobuf_body("otel-1", 3, message="step {} of the plan", scope="agent.planner")
        tools = protobuf_body("otel-2", 2, message="tool call {} failed: timeout", scope="agent.tools")
        assert (await export(on_a, plan)).status_code == 200
        assert (await export(on_a, tools)).status_code == 200
    async with assistant(b) as client:
        listed = await call(client, "list_agents")
        assert [(agent["id"], agent["line_count"]) for agent in listed["agents"]] == [("otel-2", 2), ("otel-1", 3)]
        page = await call(client, "read_logs", agent_id="otel-1")
        assert [(line["seq"], *shown(line)) for line in page["lines"]] == [
            (n, "INFO", f"step {n} of the plan", "agent.planner") for n in (1, 2, 3)
        ]
        assert "wait_for_lines with after=3" in text_of(await client.call_tool("read_logs", {"agent_id": "otel-1"}))
        found = await call(client, "search_logs", q="timeout")
        assert {(line["agent"], line["message"], line["source"]) for line in found["lines"]} == {
            ("otel-2", f"tool call {n} failed: timeout", "agent.tools") for n in (1, 2)
        }
    async with assistant(b, "bob") as bobs:
        assert (await call(bobs, "list_agents"))["agents"] == []


async def test_wait_for_lines_on_one_process_returns_a_line_posted_to_the_other_while_it_waits(
    pair: list[ServerProcess],
) -> None:
    a, b = pair
    async with a.client() as on_a, assistant(b) as client:
        assert (await export(on_a, protobuf_body("followed", 1, message="started"))).status_code == 200
        arguments = {"agent_id": "followed", "after": 1, "timeout_s": 30}
        waiting = asyncio.create_task(client.call_tool("wait_for_lines", arguments))
        await until_waiting(b)  # B's /healthz counts the wait's subscription
        started = time.monotonic()
        assert (await export(on_a, protobuf_body("followed", 1, message="fresh from A"))).status_code == 200
        result = await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 5  # woken by the line, not by the 30 s timeout
        found = result.structured_content
        assert found is not None and found["reason"] == "lines" and found["next_after"] == 2
        assert [(line["seq"], line["message"]) for line in found["lines"]] == [(2, "fresh from A")]
        assert await open_streams(b) == 0  # the wait let go of its subscription
