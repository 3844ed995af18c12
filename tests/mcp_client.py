"""An AI assistant on Sentra's /mcp: the official MCP Python SDK's client in its default mode (Streamable HTTP),
its tool calls, and how a test knows a wait_for_lines call has subscribed. Works on any Sentra a test starts, in
this process (conftest's RunningServer) or as a child (processes' ServerProcess)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx
import httpx2
from conftest import TLS
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent


class Sentra(Protocol):
    """A running Sentra: where it listens and how to get a token for a user."""

    @property
    def url(self) -> str:
        """Base URL of the server."""
        ...

    def token(self, sub: str = "alice") -> str:
        """A valid token for `sub`."""
        ...


@asynccontextmanager
async def assistant(server: Sentra, sub: str = "alice", *, token: str | None = None) -> AsyncIterator[Client]:
    """The SDK's Client in its default mode on the server's /mcp, authenticated as `sub` (or with `token`; "": none)."""
    headers = {"Authorization": f"Bearer {token if token is not None else server.token(sub)}"} if token != "" else {}
    # A wait_for_lines call holds its answer for up to a minute: read longer than that.
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(10, read=90)) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client,
    ):
        yield client


def text_of(result: CallToolResult) -> str:
    """The text the assistant reads."""
    assert len(result.content) == 1 and isinstance(result.content[0], TextContent)
    return result.content[0].text


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def failure(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; the message the assistant reads."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result
    assert result.structured_content is None
    return text_of(result)


async def open_streams(server: Sentra) -> int:
    """How many subscriptions the server holds (a waiting wait_for_lines is one)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0, verify=TLS) as anonymous:
        return int((await anonymous.get("/healthz")).json()["open_streams"])


async def until_waiting(server: Sentra, count: int = 1) -> None:
    """Return once `count` subscriptions are open on the server, within 5 s."""
    deadline = time.monotonic() + 5
    while await open_streams(server) < count:
        assert time.monotonic() < deadline, "the wait never subscribed"
        await asyncio.sleep(0.02)
