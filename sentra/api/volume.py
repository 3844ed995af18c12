"""GET /api/agents/{id}/volume: an agent's lines per level over time, in equal buckets, for the viewer's charts."""

from __future__ import annotations

from sentra.api.base import ApiHandler, RequestChecks
from sentra.errors import BadRequest
from sentra.lines import parse_ts
from sentra.volume import DEFAULT_BUCKETS, MAX_BUCKETS


def time_argument(handler: RequestChecks, name: str) -> float | None:
    """A time argument as a line's ts is given: epoch seconds (or ms, µs, ns) or ISO 8601 (UTC if no offset)."""
    raw = handler.query_argument(name)
    if raw is None:
        return None
    try:
        return parse_ts(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name!r}: {exc}") from None


class VolumeHandler(ApiHandler):
    """The volume chart of one agent: buckets (1-500, default 60), since and until."""

    async def get(self, agent_id: str) -> None:
        """{"buckets": [{"start", "end", "counts": {level: n}}]} over the run's stored lines or since..until."""
        agent = await self.agent_for(agent_id)
        buckets = self.int_argument("buckets", DEFAULT_BUCKETS, minimum=1) or DEFAULT_BUCKETS
        if buckets > MAX_BUCKETS:
            raise BadRequest(f"query parameter 'buckets' must be at most {MAX_BUCKETS}, not {buckets}")
        since = time_argument(self, "since")
        until = time_argument(self, "until")
        if since is not None and until is not None and until <= since:
            raise BadRequest("query parameter 'until' must be later than 'since'")
        self.write_json(await self.store.volume(agent, buckets, since, until))
