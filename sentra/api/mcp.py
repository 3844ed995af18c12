"""POST /mcp: the Model Context Protocol's Streamable HTTP transport, so AI assistants can read and follow agent runs.

Each POST carries one JSON-RPC message (a batch, for the revisions that had them) and is answered with JSON, or 202
with no body when nothing needs an answer. The server keeps no session (it issues no Mcp-Session-Id) and offers no
server-initiated stream (GET is a 405, as the transport allows), so any process of a deployment answers any request.
A token is read from the Authorization header only, as MCP clients send it, and a request from a browser page is
refused unless its Origin is in server.cors_origins (the transport's guard against DNS rebinding). HTTP refusals
(401, 403, 413) have Sentra's error body; a body that is not JSON-RPC is a 400 with a JSON-RPC error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from sentra.api.base import ApiHandler, bearer_token
from sentra.errors import Forbidden
from sentra.mcp.jsonrpc import Refused, RpcError, error_message, parse_body
from sentra.mcp.protocol import PROTOCOL_VERSION_HEADER, check_version, respond
from sentra.mcp.tools import ToolContext
from sentra.scopes import SCOPE_READ


class McpHandler(ApiHandler):
    """The MCP endpoint: JSON-RPC over POST."""

    watches_close = True  # a tool that waits stops when its client leaves
    _context: ToolContext | None = None

    def before_body(self) -> Awaitable[None] | None:
        """Refuse a page on a foreign origin (403) before reading its body."""
        origin = self.header("Origin")
        if origin is not None and origin not in self.config["server.cors_origins"]:
            raise Forbidden(
                f"a page on {origin[:100]!r} may not call /mcp; list its origin in server.cors_origins to allow it",
                code="forbidden_origin",
            )
        return super().before_body()

    def token_from_request(self) -> str | None:
        """The bearer token of the Authorization header: MCP clients send it there, never in a URL or a cookie."""
        return bearer_token(self.header("Authorization"))

    def on_connection_close(self) -> None:
        if self._context is not None:
            self._context.cancel()

    async def post(self) -> None:
        """Answer every message of the body: one JSON answer, an array of them for a batch, or 202."""
        principal = self.principal
        principal.require(SCOPE_READ)
        try:
            messages, batch = parse_body(self.body)
            check_version(self.header(PROTOCOL_VERSION_HEADER), batch)
        except RpcError as exc:
            self.write_json(error_message(None, exc), status=400)
            return
        context = self._context = ToolContext(self.services, principal)
        answers = [answer for answer in await asyncio.gather(*(respond(m, context) for m in messages)) if answer]
        if not answers:
            self.set_status(202)
        elif batch:
            self.write_json(answers)
        else:
            # A single message that is not a valid request is the client's error, as the transport says: a 400.
            self.write_json(answers[0], status=400 if isinstance(messages[0], Refused) else 200)
