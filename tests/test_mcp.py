"""POST /mcp: an AI assistant reads and follows agent runs over the Model Context Protocol, tested with the official
MCP Python SDK's client (Streamable HTTP, its default mode) against the real server, and with raw HTTP for what the
SDK never sends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import httpx2
import pytest
from conftest import RunningServer, ServerFactory, create_agent, make_token, post_lines, set_status
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_client import assistant, call, failure, open_streams, text_of, until_waiting
from test_openapi import check_response

from sentra import __version__

TOOL_NAMES = {"list_agents", "get_agent", "read_logs", "search_logs", "wait_for_lines"}
JSONRPC = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def leaf_errors(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions inside a group, and inside the groups it holds."""
    return [
        leaf
        for error in group.exceptions
        for leaf in (leaf_errors(error) if isinstance(error, BaseExceptionGroup) else [error])
    ]


async def rpc(client: httpx.AsyncClient, body: Any, **headers: str) -> httpx.Response:
    """POST a raw JSON-RPC body to /mcp."""
    return await client.post("/mcp", json=body, headers={**JSONRPC, **headers})


async def alices_runs(alice: httpx.AsyncClient) -> None:
    """run-1 (running, three lines of each level and source), run-2 (completed, labelled), then run-3 (empty)."""
    await create_agent(alice, id="run-1", name="nightly", labels={"team": "ml"})
    await post_lines(
        alice,
        "run-1",
        [
            {"message": "starting up", "level": "INFO", "source": "main"},
            {"message": "disk almost full", "level": "WARNING", "source": "disk", "free_gb": 2},
            {"message": "Boom: tool crashed", "level": "ERROR", "source": "tools", "tool": "search"},
        ],
    )
    await create_agent(alice, id="run-2", labels={"team": "web"})
    await post_lines(alice, "run-2", ["fetching", "boom again", "done"])
    await set_status(alice, "run-2", "completed")
    await create_agent(alice, id="run-3")


# ---- the handshake and the tool list --------------------------------------------------------------


async def test_the_sdk_client_in_its_default_mode_connects(server: RunningServer) -> None:
    async with assistant(server) as client:
        assert client.protocol_version == "2025-11-25"
        assert client.server_info is not None
        assert (client.server_info.name, client.server_info.version) == ("sentra", __version__)
        assert client.server_capabilities.tools is not None
        assert client.instructions is not None and "wait_for_lines" in client.instructions


async def test_initialize_handshake_negotiates_the_version_and_answers_ping(server: RunningServer) -> None:
    headers = server.headers("alice")
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(f"{server.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        result = await session.initialize()
        assert result.protocol_version == "2025-11-25"
        assert result.capabilities.tools is not None
        assert result.capabilities.resources is None and result.capabilities.prompts is None
        assert result.server_info.name == "sentra"
        await session.send_ping()
    async with server.client("alice") as alice:
        for asked, spoken in (("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"), ("1999-01-01", "2025-11-25")):
            params = {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
            answer = await rpc(alice, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
            assert answer.json()["result"]["protocolVersion"] == spoken
            assert "Mcp-Session-Id" not in answer.headers  # nothing to carry between requests


async def test_tools_list_has_the_five_tools_with_their_schemas(server: RunningServer) -> None:
    async with assistant(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool.description and len(tool.description) < 600
        assert tool.input_schema["type"] == "object" and tool.input_schema["additionalProperties"] is False
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tools["get_agent"].input_schema["required"] == ["agent_id"]
    assert tools["search_logs"].input_schema["required"] == ["q"]
    assert tools["wait_for_lines"].input_schema["required"] == ["agent_id", "after"]
    assert tools["wait_for_lines"].input_schema["properties"]["timeout_s"]["maximum"] == 60
    assert tools["read_logs"].input_schema["properties"]["level"]["enum"] == [
        "DEBUG",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
    ]
    assert tools["list_agents"].input_schema["properties"]["status"]["enum"] == ["running", "completed", "failed"]


# ---- every tool, on real lines ---------------------------------------------------------------------


async def test_list_agents_shows_the_callers_runs_newest_first(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        listed = await call(client, "list_agents")
        assert [agent["id"] for agent in listed["agents"]] == ["run-3", "run-2", "run-1"]
        assert listed["agents"] == (await alice.get("/api/agents")).json()["agents"]
        assert listed["more"] is False
        text = text_of(await client.call_tool("list_agents", {}))
        assert "run-1" in text and '"nightly"' in text and "running, 3 lines" in text and "team=ml" in text
        assert "completed, 3 lines" in text and "last activity 20" in text
        running = await call(client, "list_agents", status="running")
        assert [agent["id"] for agent in running["agents"]] == ["run-3", "run-1"]
        labelled = await call(client, "list_agents", label="team=web")
        assert [agent["id"] for agent in labelled["agents"]] == ["run-2"]
        first = await call(client, "list_agents", limit=1)
        assert [agent["id"] for agent in first["agents"]] == ["run-3"] and first["more"] is True
        none = await client.call_tool("list_agents", {"label": "team=nobody"})
        assert text_of(none) == "No agent matches." and none.structured_content == {"agents": [], "more": False}


async def test_get_agent_is_the_agent_record(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        record = await call(client, "get_agent", agent_id="run-2")
        assert record == (await alice.get("/api/agents/run-2")).json()
        text = text_of(await client.call_tool("get_agent", {"agent_id": "run-2"}))
    assert "status: completed" in text and "lines: 3 stored, seq 1 to 3" in text and "owner: alice" in text


async def test_read_logs_reads_history_as_the_http_api_does(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    await post_lines(alice, "run-1", [f"step {n}" for n in range(4, 11)])
    async with assistant(server) as client:
        for arguments, query in (
            ({}, {"limit": 100}),
            ({"limit": 4}, {"limit": 4}),
            ({"after": 4, "limit": 3}, {"after": 4, "limit": 3}),
            ({"before": 11, "limit": 2}, {"before": 11, "limit": 2}),
            ({"level": "WARNING"}, {"level": "WARNING", "limit": 100}),
            ({"q": "BOOM"}, {"q": "BOOM", "limit": 100}),
        ):
            page = await call(client, "read_logs", agent_id="run-1", **arguments)
            expected = (await alice.get("/api/agents/run-1/logs", params=query)).json()
            assert page == {"agent_id": "run-1", "status": "running", **expected}, arguments
        text = text_of(await client.call_tool("read_logs", {"agent_id": "run-1", "limit": 3}))
        lines = text.splitlines()
        assert lines[0] == "run-1 (running) has lines 1 to 10; 3 shown:"
        assert lines[2].startswith("#2 20") and lines[2].endswith(' WARNING [disk] disk almost full {"free_gb": 2}')
        assert "Later lines: after=3." in text and "wait_for_lines with after=10" in text
        empty = text_of(await client.call_tool("read_logs", {"agent_id": "run-3"}))
        assert empty.startswith("No lines match.")


async def test_search_logs_finds_lines_across_the_callers_agents_newest_first(
    server: RunningServer, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await alices_runs(alice)
    await post_lines(bob, "bobs-run", ["boom in bob's run"])
    await post_lines(alice, "run-4", [{"message": "late boom", "ts": time.time() + 60}])
    async with assistant(server) as client:
        found = await call(client, "search_logs", q="boom")
        assert [(line["agent"], line["message"]) for line in found["lines"]] == [
            ("run-4", "late boom"),
            ("run-2", "boom again"),
            ("run-1", "Boom: tool crashed"),
        ]
        assert found["more"] is False
        errors = await call(client, "search_logs", q="boom", level="ERROR")
        assert [line["message"] for line in errors["lines"]] == ["Boom: tool crashed"]
        web = await call(client, "search_logs", q="boom", label="team=web")
        assert [line["agent"] for line in web["lines"]] == ["run-2"]
        newest = await call(client, "search_logs", q="boom", limit=1)
        assert [line["message"] for line in newest["lines"]] == ["late boom"]
        text = text_of(await client.call_tool("search_logs", {"q": "boom", "limit": 2}))
        assert text.splitlines()[1].startswith("run-4 #1 ") and "more match" in text
        nothing = text_of(await client.call_tool("search_logs", {"q": "no such text"}))
        assert nothing == "No line matches 'no such text'."


# ---- wait_for_lines ----------------------------------------------------------------------------------


async def test_wait_for_lines_answers_at_once_when_lines_are_there(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        started = time.monotonic()
        found = await call(client, "wait_for_lines", agent_id="run-1", after=1)
        assert time.monotonic() - started < 2
    assert found["reason"] == "lines" and found["status"] == "running" and found["next_after"] == 3
    assert [line["seq"] for line in found["lines"]] == [2, 3]


async def test_wait_for_lines_returns_a_line_posted_while_it_waits(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        started = time.monotonic()
        waiting = asyncio.create_task(client.call_tool("wait_for_lines", {"agent_id": "run-1", "after": 3}))
        await until_waiting(server)
        await post_lines(alice, "run-1", [{"message": "fresh line", "level": "ERROR", "answer": 42}])
        result = await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 10  # woken by the line, not by the 30 s timeout
        found = result.structured_content
        assert found is not None and found["reason"] == "lines" and found["next_after"] == 4
        assert [(line["seq"], line["message"], line["fields"]) for line in found["lines"]] == [
            (4, "fresh line", {"answer": 42})
        ]
        assert "fresh line" in text_of(result) and "after=4" in text_of(result)
        assert await open_streams(server) == 0  # the wait let go of its subscription


async def test_wait_for_lines_does_not_hold_up_other_requests(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        waiting = asyncio.create_task(client.call_tool("wait_for_lines", {"agent_id": "run-1", "after": 3}))
        await until_waiting(server)
        started = time.monotonic()
        assert (await call(client, "get_agent", agent_id="run-1"))["last_seq"] == 3
        async with assistant(server) as other:
            assert len((await call(other, "list_agents"))["agents"]) == 3
        assert time.monotonic() - started < 2 and not waiting.done()
        await post_lines(alice, "run-1", ["wake up"])
        assert (await asyncio.wait_for(waiting, 10)).structured_content["reason"] == "lines"  # type: ignore[index]


async def test_wait_for_lines_returns_when_the_run_ends(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        waiting = asyncio.create_task(client.call_tool("wait_for_lines", {"agent_id": "run-1", "after": 3}))
        await until_waiting(server)
        response = await alice.patch("/api/agents/run-1", json={"status": "failed", "reason": "out of memory"})
        assert response.status_code == 200
        result = await asyncio.wait_for(waiting, 10)
        found = result.structured_content
        assert found == {"agent_id": "run-1", "status": "failed", "reason": "finished", "lines": [], "next_after": 3}
        assert text_of(result) == "run-1 has failed (out of memory); no line after seq 3."
        # A finished run answers at once, with the lines it logged after the cursor.
        ended = await call(client, "wait_for_lines", agent_id="run-2", after=1)
        assert ended["reason"] == "finished" and [line["message"] for line in ended["lines"]] == ["boom again", "done"]


async def test_wait_for_lines_times_out_cleanly(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        started = time.monotonic()
        result = await client.call_tool("wait_for_lines", {"agent_id": "run-3", "after": 0, "timeout_s": 0.5})
        assert 0.4 < time.monotonic() - started < 5
    found = result.structured_content
    assert found == {"agent_id": "run-3", "status": "running", "reason": "timeout", "lines": [], "next_after": 0}
    assert text_of(result) == "No new line of run-3 within 0.5 s; it is still running. Call again with after=0."
    assert await open_streams(server) == 0


async def test_wait_for_lines_ends_when_the_agent_is_deleted(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        waiting = asyncio.create_task(client.call_tool("wait_for_lines", {"agent_id": "run-3", "after": 0}))
        await until_waiting(server)
        assert (await alice.delete("/api/agents/run-3")).status_code == 204
        result = await asyncio.wait_for(waiting, 10)
    assert result.structured_content is not None and result.structured_content["reason"] == "deleted"
    assert text_of(result) == "run-3 was deleted."


async def test_a_wait_lets_go_as_soon_as_its_client_goes_away(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    arguments = {"name": "wait_for_lines", "arguments": {"agent_id": "run-3", "after": 0, "timeout_s": 60}}
    waiting = asyncio.create_task(rpc(alice, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": arguments}))
    await until_waiting(server)
    waiting.cancel()  # the client closes its connection
    deadline = time.monotonic() + 5
    while await open_streams(server):
        assert time.monotonic() < deadline, "the wait held its subscription after its client left"
        await asyncio.sleep(0.02)


async def test_waits_count_against_the_open_streams_limit(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_streams_per_user": 1})
    async with server.client("alice") as alice, assistant(server) as client:
        await post_lines(alice, "run", ["one"])
        first = asyncio.create_task(client.call_tool("wait_for_lines", {"agent_id": "run", "after": 1}))
        await until_waiting(server)
        message = await failure(client, "wait_for_lines", agent_id="run", after=1)
        assert message == "1 streams are already open for this user; close one first"
        await post_lines(alice, "run", ["two"])
        assert (await asyncio.wait_for(first, 10)).structured_content["reason"] == "lines"  # type: ignore[index]


# ---- who sees what -------------------------------------------------------------------------------------


async def test_another_user_sees_nothing_of_alices_runs_through_any_tool(
    server: RunningServer, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await alices_runs(alice)
    await post_lines(bob, "bobs-run", ["bob's own boom"])
    async with assistant(server, "bob") as client:
        assert [agent["id"] for agent in (await call(client, "list_agents"))["agents"]] == ["bobs-run"]
        for tool in ("get_agent", "read_logs"):
            assert await failure(client, tool, agent_id="run-1") == "agent 'run-1' belongs to another user"
        message = await failure(client, "wait_for_lines", agent_id="run-1", after=0)
        assert message == "agent 'run-1' belongs to another user"
        found = await call(client, "search_logs", q="boom")
        assert [line["agent"] for line in found["lines"]] == ["bobs-run"]
    assert await open_streams(server) == 0


async def test_an_admin_sees_every_users_runs(
    server: RunningServer, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await alices_runs(alice)
    await post_lines(bob, "bobs-run", ["bob's own boom"])
    async with assistant(server, token=make_token("root", scope="admin")) as client:
        listed = await call(client, "list_agents")
        assert [agent["id"] for agent in listed["agents"]] == ["bobs-run", "run-3", "run-2", "run-1"]
        assert (await call(client, "get_agent", agent_id="run-1"))["owner"] == "alice"
        found = await call(client, "search_logs", q="boom")
        assert {line["agent"] for line in found["lines"]} == {"bobs-run", "run-1", "run-2"}


async def test_a_stream_ticket_sees_only_its_agent(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alices_runs(alice)
    ticket = (await alice.post("/api/stream-tickets", json={"agent": "run-1"})).json()["token"]
    async with assistant(server, token=ticket) as client:
        assert [agent["id"] for agent in (await call(client, "list_agents"))["agents"]] == ["run-1"]
        assert (await call(client, "read_logs", agent_id="run-1"))["lines"]
        assert await failure(client, "get_agent", agent_id="run-2") == "agent 'run-2' belongs to another user"
        found = await call(client, "search_logs", q="boom")
        assert [line["agent"] for line in found["lines"]] == ["run-1"]


# ---- refusals --------------------------------------------------------------------------------------------


BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("get_agent", {}, "argument 'agent_id' is required"),
    ("get_agent", {"agent_id": "nope"}, "no agent 'nope'"),
    ("get_agent", {"agent_id": "has space"}, "argument 'agent_id' must match"),
    ("get_agent", {"agent_id": 7}, "argument 'agent_id' must be a string, not 7"),
    ("get_agent", {"agent_id": "run-1", "verbose": True}, "unknown argument 'verbose'; this tool takes agent_id"),
    ("list_agents", {"status": "paused"}, "argument 'status' must be one of running, completed, failed"),
    ("list_agents", {"label": "team"}, "argument 'label' must match"),
    ("list_agents", {"limit": 0}, "argument 'limit' must be at least 1, not 0"),
    ("list_agents", {"limit": 1001}, "argument 'limit' must be at most 1000, not 1001"),
    ("list_agents", {"limit": "ten"}, "argument 'limit' must be an integer, not 'ten'"),
    ("list_agents", {"limit": 2.5}, "argument 'limit' must be an integer, not 2.5"),
    ("read_logs", {"agent_id": "run-1", "after": 1, "before": 3}, "use either 'after' or 'before', not both"),
    ("read_logs", {"agent_id": "run-1", "level": "LOUD"}, "argument 'level' must be one of DEBUG, INFO"),
    ("read_logs", {"agent_id": "run-1", "after": -1}, "argument 'after' must be at least 0, not -1"),
    ("search_logs", {}, "argument 'q' is required"),
    ("search_logs", {"q": ""}, "argument 'q' must not be empty"),
    ("wait_for_lines", {"agent_id": "run-1"}, "argument 'after' is required"),
    ("wait_for_lines", {"agent_id": "run-1", "after": 0, "timeout_s": 61}, "argument 'timeout_s' must be at most 60"),
    ("wait_for_lines", {"agent_id": "run-1", "after": True}, "argument 'after' must be an integer, not True"),
]


async def test_bad_arguments_are_tool_errors_that_say_what_was_wrong(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await alices_runs(alice)
    async with assistant(server) as client:
        for tool, arguments, message in BAD_ARGUMENTS:
            assert (await failure(client, tool, **arguments)).startswith(message), (tool, arguments)
        assert (await call(client, "list_agents", limit=2.0))["more"] is True  # 2.0 is an integer in JSON
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("delete_agent", {"agent_id": "run-1"})
        assert unknown.value.code == -32602 and "Unknown tool: 'delete_agent'" in unknown.value.error.message
    assert await open_streams(server) == 0


async def test_without_a_valid_token_the_sdk_client_cannot_connect(server: RunningServer) -> None:
    for token in ("", "not-a-jwt", make_token("alice", exp=1_000_000_000)):
        # The SDK sees the 401 as an error answer to its probe, then to initialize, and gives up.
        with pytest.raises(ExceptionGroup) as refused:
            async with assistant(server, token=token):
                pass
        assert [(type(error), str(error)) for error in leaf_errors(refused.value)] == [
            (MCPError, "Server returned an error response")
        ]
    async with server.client(None) as anonymous:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        missing = await rpc(anonymous, initialize)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="sentra"'
        assert missing.json()["error"]["code"] == "not_authenticated"
        bad = await rpc(anonymous, initialize, Authorization="Bearer not-a-jwt")
        assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith('Bearer realm="sentra", error=')
        in_url = await anonymous.post(f"/mcp?token={make_token('alice')}", json=initialize, headers=JSONRPC)
        assert in_url.status_code == 401  # MCP clients send the token in the header, and the URL is no place for it


# ---- the transport, as raw HTTP ------------------------------------------------------------------------


async def test_json_rpc_errors_are_answered_as_the_protocol_says(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        unknown = await rpc(alice, {"jsonrpc": "2.0", "id": 7, "method": "resources/list"})
        assert unknown.status_code == 200
        assert check_response(unknown) == {
            "jsonrpc": "2.0",
            "id": 7,
            "error": {"code": -32601, "message": "Method not found: 'resources/list'"},
        }
        malformed = await alice.post("/mcp", content=b'{"jsonrpc": "2.0", "id": 1,', headers=JSONRPC)
        assert malformed.status_code == 400
        assert check_response(malformed)["error"]["code"] == -32700 and malformed.json()["id"] is None
        for body, code in (
            ([], -32600),
            ("ping", -32600),
            ({"id": 1, "method": "ping"}, -32600),
            ({"jsonrpc": "2.0", "id": None, "method": "ping"}, -32600),
            ({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": [1]}, -32602),
        ):
            refused = await rpc(alice, body)
            assert refused.status_code == 400 and check_response(refused)["error"]["code"] == code, body
        bad_params = await rpc(alice, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": 5}})
        assert bad_params.status_code == 200 and bad_params.json()["error"]["code"] == -32602
        arguments = {"name": "list_agents", "arguments": ["x"]}
        not_object = await rpc(alice, {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": arguments})
        assert not_object.json()["error"] == {
            "code": -32602,
            "message": 'Invalid params: "arguments" must be an object',
        }


async def test_notifications_get_202_and_batches_follow_the_negotiated_version(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        for body in (
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
            {"jsonrpc": "2.0", "id": 9, "result": {}},  # a client's answer to a request Sentra never sends
        ):
            accepted = await rpc(alice, body, **{"MCP-Protocol-Version": "2025-11-25"})
            assert (accepted.status_code, accepted.content) == (202, b""), body
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "two", "method": "nope"},
        ]
        old = await rpc(alice, batch, **{"MCP-Protocol-Version": "2025-03-26"})
        assert check_response(old) == [
            {"jsonrpc": "2.0", "id": 1, "result": {}},
            {"jsonrpc": "2.0", "id": "two", "error": {"code": -32601, "message": "Method not found: 'nope'"}},
        ]
        current = await rpc(alice, batch, **{"MCP-Protocol-Version": "2025-11-25"})
        assert current.status_code == 400 and "no batches" in check_response(current)["error"]["message"]


async def test_an_unsupported_protocol_version_is_a_400_that_lets_a_newer_client_fall_back(
    server: RunningServer,
) -> None:
    async with server.client("alice") as alice:
        probe = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
        refused = await rpc(alice, probe, **{"MCP-Protocol-Version": "2026-07-28"})
    assert refused.status_code == 400
    error = check_response(refused)["error"]
    # Not a modern server's -32022: a client that speaks both eras falls back to initialize, as the SDK's does.
    assert error["code"] == -32600 and error["data"]["requested"] == "2026-07-28"
    assert "2025-11-25" in error["data"]["supported"]


async def test_get_and_delete_are_405_and_there_is_no_session(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        for method in ("GET", "DELETE"):
            response = await alice.request(method, "/mcp", headers={"Accept": "text/event-stream"})
            assert response.status_code == 405 and response.headers["Allow"] == "POST, OPTIONS"
        listed = await rpc(alice, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert listed.status_code == 200 and "Mcp-Session-Id" not in listed.headers
        assert {tool["name"] for tool in check_response(listed)["result"]["tools"]} == TOOL_NAMES


async def test_a_page_on_a_foreign_origin_is_refused(start_server: ServerFactory) -> None:
    server = await start_server(**{"server.cors_origins": ["https://dash.example"]})
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with server.client("alice") as alice:
        foreign = await rpc(alice, ping, Origin="http://evil.example:8765")
        assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "forbidden_origin"
        allowed = await rpc(alice, ping, Origin="https://dash.example")
        assert allowed.status_code == 200 and allowed.headers["Access-Control-Allow-Origin"] == "https://dash.example"
        assert (await rpc(alice, ping)).status_code == 200  # assistants send no Origin


async def test_a_token_that_cannot_read_logs_is_refused(server: RunningServer) -> None:
    async with server.client(None) as anonymous:
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        write_only = f"Bearer {make_token('alice', scope='logs:write')}"
        refused = await rpc(anonymous, ping, Authorization=write_only)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"


async def test_with_auth_off_the_local_user_needs_no_token(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.mode": "none"})
    call_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_agents"}}
    async with server.client(None) as anonymous:
        assert (await anonymous.post("/api/agents/local-run/logs", json=["hello"])).status_code == 200
        listed = await rpc(anonymous, call_list)
    assert [agent["id"] for agent in listed.json()["result"]["structuredContent"]["agents"]] == ["local-run"]
