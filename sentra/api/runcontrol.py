"""Stopping a run and sharing one: POST /api/agents/{id}/stop, POST /api/agents/{id}/share, GET .../shares and
DELETE .../share/{share_id}.

A stop request is a flag on the agent record (stop_requested, with who asked); the agent's own process learns of it
from its ingest answers or by reading the record, and ends itself (`sentra run` does). A share link is a token that
reads one agent and nothing else (sentra.auth.TokenService.create_share); revoking it records its id among the
revoked tokens, which every process reads within a second and which ends the streams opened with it.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from sentra.api.base import ApiHandler
from sentra.config import parse_duration
from sentra.errors import BadRequest, Forbidden, NotFound
from sentra.models import Agent
from sentra.scopes import SCOPE_WRITE
from sentra.storage.shares import Share

DEFAULT_SHARE_TTL = "24h"
STOP_HEADER = "Sentra-Stop-Requested"  # OTLP's answers: the agents asked to stop (its protobuf has no field for it)


def with_stop(answer: str, agent: Agent | None) -> str:
    """An ingest answer (a JSON object's text) with "stop_requested": true and who asked, once `agent` was asked to
    stop; else unchanged."""
    if agent is None or agent.stop_requested_by is None:
        return answer
    return f'{answer[:-1]}, "stop_requested": true, "stop_requested_by": {json.dumps(agent.stop_requested_by)}}}'


class StopHandler(ApiHandler):
    """POST asks a running agent to stop."""

    async def post(self, agent_id: str) -> None:
        """202 with the agent record (stop_requested: true); the owner or an admin; 409 once the run has ended."""
        await self.agent_for(agent_id, SCOPE_WRITE)
        principal = self.require_write()
        agent = await self.store.request_stop(agent_id, principal.subject)
        self.write_json(agent.to_json(), status=202)


class ShareChecks(ApiHandler):
    """The agent named in the path, for its owner (or, where allowed, an admin) with a token of their own."""

    async def shared_agent(self, agent_id: str, *, admin_too: bool) -> Agent:
        """The agent, if the caller owns it (or is an admin and `admin_too`); Forbidden for anyone else."""
        agent = await self.agent_for(agent_id)
        principal = self.principal
        if principal.agent is not None:
            raise Forbidden("a share link or stream ticket cannot manage share links", code="insufficient_scope")
        if agent.owner != principal.subject and not (admin_too and principal.is_admin):
            raise Forbidden(f"only the owner of agent {agent_id!r} can share it", code="not_owner")
        return agent


class ShareHandler(ShareChecks):
    """POST makes a share link of the agent."""

    async def post(self, agent_id: str) -> None:
        """{"ttl": "24h"} → 201 {"id", "url", "token", "expires_at"}; the ttl at most auth.max_share_ttl."""
        agent = await self.shared_agent(agent_id, admin_too=False)
        body = self.json_body() if self.body else {}
        unknown = sorted(set(body) - {"ttl"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}; a share link takes only 'ttl'")
        ttl = self._ttl(body.get("ttl", DEFAULT_SHARE_TTL))
        if self.tokens is None or not self.tokens.can_sign:
            raise Forbidden("this server does not mint tokens (auth is off or keys come from an identity provider)")
        token, share_id, expires_at = self.tokens.create_share(agent.id, agent.owner, ttl)
        await self.store.shares.add(
            Share(share_id, agent.pk, agent.id, self.principal.subject, time.time(), expires_at)
        )
        self.set_header("Location", f"/api/agents/{agent.id}/share/{share_id}")
        url = f"{self._base_url()}/?agent={quote(agent.id, safe='')}#share={token}"
        self.write_json({"id": share_id, "url": url, "token": token, "expires_at": expires_at}, status=201)

    def _ttl(self, value: object) -> float:
        """The link's lifetime in seconds; BadRequest unless it is a positive duration within auth.max_share_ttl."""
        longest = float(self.config["auth.max_share_ttl"])
        try:
            if not isinstance(value, str):
                raise ValueError
            ttl = parse_duration(value)
        except ValueError:
            raise BadRequest(
                f'\'ttl\' must be a duration such as "1h", "24h" or "7d", not {str(value)[:40]!r}', code="invalid_ttl"
            ) from None
        if ttl <= 0:
            raise BadRequest("'ttl' must be longer than 0", code="invalid_ttl")
        if ttl > longest:
            raise BadRequest(
                f"'ttl' must be at most {longest / 86400:g} days (auth.max_share_ttl), not {value!r}",
                code="invalid_ttl",
            )
        return ttl

    def _base_url(self) -> str:
        """Where people reach the viewer: server.public_url, else the scheme and Host the request came with."""
        public = str(self.config["server.public_url"]).rstrip("/")
        return public or f"{self.protocol}://{self.header('Host') or 'localhost'}"


class SharesHandler(ShareChecks):
    """GET lists the agent's share links that have not expired."""

    async def get(self, agent_id: str) -> None:
        """{"shares": [{"id", "agent", "created_by", "created_at", "expires_at"}]}, oldest first; no tokens."""
        agent = await self.shared_agent(agent_id, admin_too=True)
        shares = await self.store.shares.of_agent(agent.pk)
        self.write_json({"shares": [share.to_json() for share in shares]})


class RevokeShareHandler(ShareChecks):
    """DELETE revokes one share link."""

    async def delete(self, agent_id: str, share_id: str) -> None:
        """204; its token is refused (401) by every process within a second and its open streams end."""
        agent = await self.shared_agent(agent_id, admin_too=True)
        share = await self.store.shares.get(share_id)
        if share is None or share.agent_pk != agent.pk:
            raise NotFound(f"agent {agent_id!r} has no share link {share_id[:80]!r}", code="share_not_found")
        await self.store.shares.revoke(share_id)
        if self.tokens is not None:
            # This process refuses it at once; the others read the revocation within a second (serve.py).
            self.tokens.revoked.add(share_id)
            self.registry.cut_token(share_id)
        self.set_status(204)
