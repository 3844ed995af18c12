"""The Model Context Protocol as Sentra serves it: the revisions that open with the initialize handshake (2024-11-05
to 2025-11-25), version negotiation, initialize, ping, tools/list and tools/call. Any other request is Method not
found; notifications (initialized, cancelled) and a client's responses need no answer. Nothing is kept between
requests, so any process of a deployment answers any request of a conversation."""

from __future__ import annotations

from typing import Any

from sentra import __version__
from sentra.mcp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    Call,
    Message,
    Refused,
    RpcError,
    error_message,
    result_message,
)
from sentra.mcp.tools import TOOLS, ToolContext

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")  # newest first
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[0]
# What a request without an MCP-Protocol-Version header speaks, as the Streamable HTTP transport says since 2025-06-18.
UNVERSIONED_PROTOCOL_VERSION = "2025-03-26"
BATCH_PROTOCOL_VERSIONS = frozenset({"2024-11-05", "2025-03-26"})  # 2025-06-18 removed JSON-RPC batches
PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
SERVER_INFO = {"name": "sentra", "title": "Sentra", "version": __version__}
INSTRUCTIONS = (
    "Sentra keeps the live logs of AI agent runs. list_agents finds runs; get_agent shows one; read_logs and "
    "search_logs read lines; wait_for_lines follows a running agent until it finishes."
)
_TOOL_LIST = [tool.listing() for tool in TOOLS.values()]


def negotiate(requested: str) -> str:
    """The version to speak: the client's if Sentra speaks it, else Sentra's newest (the client then decides)."""
    return requested if requested in PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION


def check_version(header: str | None, batch: bool) -> None:
    """RpcError for a request whose MCP-Protocol-Version Sentra does not speak, or a batch its version has none of."""
    if header is not None and header not in PROTOCOL_VERSIONS:
        raise RpcError(
            INVALID_REQUEST,
            f"Unsupported {PROTOCOL_VERSION_HEADER} {header[:40]!r}: this server speaks {', '.join(PROTOCOL_VERSIONS)}"
            ", negotiated by initialize",
            {"supported": list(PROTOCOL_VERSIONS), "requested": header[:40]},
        )
    if batch and (header or UNVERSIONED_PROTOCOL_VERSION) not in BATCH_PROTOCOL_VERSIONS:
        raise RpcError(INVALID_REQUEST, f"Invalid Request: MCP {header} has no batches; send one message per POST")


async def respond(message: Message, context: ToolContext) -> dict[str, Any] | None:
    """The response to one message of a body; None when nothing answers it."""
    if message is None:
        return None
    if isinstance(message, Refused):
        return error_message(message.id, message.error)
    if message.id is None:
        return None  # a notification (initialized, cancelled): nothing to do for a server that keeps no state
    try:
        return result_message(message.id, await answer(message, context))
    except RpcError as exc:
        return error_message(message.id, exc)


async def answer(call: Call, context: ToolContext) -> dict[str, Any]:
    """The result of a request."""
    method, params = call.method, call.params
    if method == "initialize":
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(INVALID_PARAMS, 'Invalid params: initialize needs "protocolVersion", a string')
        return {
            "protocolVersion": negotiate(requested),
            "capabilities": {"tools": {}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": _TOOL_LIST}
    if method == "tools/call":
        name, arguments = params.get("name"), params.get("arguments")
        tool = TOOLS.get(name) if isinstance(name, str) else None
        if tool is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name!r}; the tools are {', '.join(TOOLS)}")
        if arguments is not None and not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, 'Invalid params: "arguments" must be an object')
        return await tool.call(context, arguments or {})
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method[:100]!r}")
