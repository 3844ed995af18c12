"""POST /api/stream-tickets: short-lived read-only tokens for one agent, safe to put in a URL."""

from __future__ import annotations

from sentra.api.base import ApiHandler
from sentra.errors import BadRequest, Forbidden


class StreamTicketsHandler(ApiHandler):
    """Mint a ticket for an agent the caller may read."""

    async def post(self) -> None:
        """{"agent": id} → {"ticket", "token", "expires_at", "stream_url"}."""
        principal = self.principal
        principal.require("logs:read")
        if principal.agent is not None:
            raise Forbidden("a stream ticket or share link cannot mint stream tickets", code="insufficient_scope")
        body = self.json_body()
        agent_id = body.get("agent")
        if not isinstance(agent_id, str) or set(body) != {"agent"}:
            raise BadRequest('the body must be {"agent": "<agent id>"} and nothing else')
        agent = await self.agent_for(agent_id)
        if self.tokens is None or not self.tokens.can_sign:
            raise Forbidden("this server does not mint tokens (auth is off or keys come from an identity provider)")
        token, expires_at = self.tokens.create_ticket(principal, agent.id, agent.owner)
        self.write_json(
            {
                "ticket": token,
                "token": token,
                "agent": agent.id,
                "expires_at": expires_at,
                "stream_url": f"/api/agents/{agent.id}/logs/stream?token={token}",
            },
            status=201,
        )
