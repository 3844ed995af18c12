"""GET /api/search: lines of every agent the caller may read that match `q`, newest first, a page at a time."""

from __future__ import annotations

from sentra.api.agents import parse_label_arguments
from sentra.api.base import ApiHandler
from sentra.api.logs import query_from_arguments
from sentra.errors import BadRequest
from sentra.scopes import SCOPE_READ
from sentra.search import SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, SearchFilters, search_lines


class SearchHandler(ApiHandler):
    """Search across agents: q; level, agent, label, since, until, limit, cursor."""

    async def get(self) -> None:
        """One page of matching lines, each with its agent, and the cursor of the next."""
        principal = self.principal
        principal.require(SCOPE_READ)  # before the arguments are read, as every endpoint checks
        query = query_from_arguments(self)
        limit = self.int_argument("limit", SEARCH_DEFAULT_LIMIT, minimum=1) or SEARCH_DEFAULT_LIMIT
        if limit > SEARCH_MAX_LIMIT:
            raise BadRequest(f"query parameter 'limit' must be at most {SEARCH_MAX_LIMIT}, not {limit}")
        filters = SearchFilters(
            query.min_level,
            tuple(self.get_query_arguments("agent")),
            parse_label_arguments(self.get_query_arguments("label")),
            self.time_argument("since"),
            self.time_argument("until"),
        )
        page = await search_lines(
            self.store, principal, query.q, filters, limit=limit, cursor=self.query_argument("cursor")
        )
        self.write_json(page.to_json())
