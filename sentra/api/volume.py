"""GET /api/agents/{id}/volume: an agent's lines per level over time, in equal buckets, for the viewer's charts."""

from __future__ import annotations

from sentra.api.base import ApiHandler
from sentra.errors import BadRequest
from sentra.volume import DEFAULT_BUCKETS, MAX_BUCKETS


class VolumeHandler(ApiHandler):
    """The volume chart of one agent: buckets (1-500, default 60), since and until."""

    async def get(self, agent_id: str) -> None:
        """{"buckets": [{"start", "end", "counts": {level: n}}]} over the run's stored lines or since..until."""
        agent = await self.agent_for(agent_id)
        buckets = self.int_argument("buckets", DEFAULT_BUCKETS, minimum=1) or DEFAULT_BUCKETS
        if buckets > MAX_BUCKETS:
            raise BadRequest(f"query parameter 'buckets' must be at most {MAX_BUCKETS}, not {buckets}")
        since = self.time_argument("since")
        until = self.time_argument("until")
        if since is not None and until is not None and until <= since:
            raise BadRequest("query parameter 'until' must be later than 'since'")
        self.write_json(await self.store.volume(agent, buckets, since, until))
