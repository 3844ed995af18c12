"""/api/agents: create, list, read, update (status, name, labels) and delete agents."""

from __future__ import annotations

import uuid
from typing import Any

from sentra.api.base import ApiHandler
from sentra.errors import BadRequest, Conflict
from sentra.lines import STATUSES, check_agent_id
from sentra.reads import LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, visible_agents
from sentra.scopes import SCOPE_READ, SCOPE_WRITE

MAX_NAME_LENGTH = 512


def parse_labels(value: Any, where: str = "labels") -> dict[str, str]:
    """A labels object of string keys and values; BadRequest otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadRequest(f"'{where}' must be an object of strings to strings", code="invalid_labels")
    if any(not key or len(key) > 128 or len(val) > 1024 for key, val in value.items()):
        raise BadRequest(f"'{where}' keys must be 1-128 characters and values at most 1024", code="invalid_labels")
    return dict(value)


def parse_label_arguments(values: list[str]) -> dict[str, str]:
    """`label=key=value` query arguments as a dict."""
    wanted: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"query parameter 'label' must look like key=value, not {item[:60]!r}")
        wanted[key] = value
    return wanted


def refuse_nulls(body: dict[str, Any]) -> None:
    """BadRequest naming the first field given as null: a field is either left out or holds a value."""
    for name, value in body.items():
        if value is None:
            raise BadRequest(f"{name!r} must not be null; leave it out instead")


def _optional_string(body: dict[str, Any], name: str, max_length: int = MAX_NAME_LENGTH) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > max_length):
        raise BadRequest(f"'{name}' must be a string of at most {max_length} characters")
    return value


class AgentsHandler(ApiHandler):
    """GET lists the caller's agents (all for admin); POST creates one."""

    async def get(self) -> None:
        """Newest first; filter by status and labels; `cursor` pages on."""
        principal = self.principal
        principal.require(SCOPE_READ)
        status = self.query_argument("status")
        if status is not None and status not in STATUSES:
            raise BadRequest(f"query parameter 'status' must be one of {', '.join(STATUSES)}")
        labels = parse_label_arguments(self.get_query_arguments("label"))
        limit = min(self.int_argument("limit", LIST_DEFAULT_LIMIT, minimum=1) or 1, LIST_MAX_LIMIT)
        cursor = self.int_argument("cursor", None, minimum=1)
        agents = await visible_agents(
            self.store, principal, status=status, labels=labels, limit=limit + 1, before_pk=cursor
        )
        more = len(agents) > limit
        agents = agents[:limit]
        self.write_json(
            {"agents": [agent.to_json() for agent in agents], "next_cursor": agents[-1].pk if more else None}
        )

    async def post(self) -> None:
        """Create a running agent; 409 if the id exists."""
        principal = self.require_write()
        body = self.json_body()
        refuse_nulls(body)
        agent_id = body.get("id")
        if agent_id is None:
            agent_id = uuid.uuid4().hex
        if not isinstance(agent_id, str):
            raise BadRequest("'id' must be a string", code="invalid_agent_id")
        check_agent_id(agent_id)
        name = _optional_string(body, "name") or ""
        labels = parse_labels(body.get("labels"))
        unknown = sorted(set(body) - {"id", "name", "labels"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}; an agent takes id, name and labels")
        agent = await self.store.create_agent(agent_id, principal.subject, name, labels)
        self.set_header("Location", f"/api/agents/{agent.id}")
        self.write_json(agent.to_json(), status=201)


class AgentHandler(ApiHandler):
    """GET, PATCH and DELETE one agent."""

    async def get(self, agent_id: str) -> None:
        """The agent's fields, line count and status."""
        agent = await self.agent_for(agent_id)
        self.write_json(agent.to_json())

    async def patch(self, agent_id: str) -> None:
        """Set status (running → completed/failed, final), name or labels."""
        current = await self.agent_for(agent_id, SCOPE_WRITE)
        self.require_write()
        if not self.body:
            raise BadRequest("PATCH needs a JSON object body: status, reason, name and/or labels")
        body = self.json_body()
        refuse_nulls(body)
        unknown = sorted(set(body) - {"status", "name", "labels", "reason"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}; PATCH takes status, reason, name and labels")
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise BadRequest(f"'status' must be one of {', '.join(STATUSES)}", code="invalid_status")
        reason = _optional_string(body, "reason", 4096)
        name = _optional_string(body, "name")
        labels = parse_labels(body["labels"]) if "labels" in body else None
        if status is not None and current.finished and status != current.status:
            raise Conflict(
                f"agent {agent_id!r} is {current.status}; a finished agent cannot change status",
                code="agent_finished",
            )
        agent = await self.store.update_agent(agent_id, status=status, name=name, labels=labels, reason=reason)
        self.write_json(agent.to_json())

    async def delete(self, agent_id: str) -> None:
        """Remove the agent and all its lines; its open streams end."""
        await self.agent_for(agent_id, SCOPE_WRITE)
        self.require_write()
        await self.store.delete_agent(agent_id)
        self.set_status(204)
