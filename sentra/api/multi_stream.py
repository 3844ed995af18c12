"""GET /api/streams: many agents over one connection, named by id or by label, resumable with one cursor."""

from __future__ import annotations

from typing import Any

from sentra import sse
from sentra.api.agents import parse_label_arguments
from sentra.api.logs import query_from_arguments
from sentra.api.streams import CATCH_UP_PAGE, STOP_REASONS, StreamHandler
from sentra.errors import BadRequest, Forbidden
from sentra.lines import Line, check_agent_id
from sentra.models import Agent
from sentra.registry import Resync
from sentra.storage.base import LineQuery


class MultiStreamHandler(StreamHandler):
    """GET /api/streams?agent=A&agent=B or ?label=k=v: many agents over one connection.

    An agent list ends once each of its agents has ended; a label stream stays open for agents that join later.
    """

    _named: frozenset[str] = frozenset()
    _wanted: dict[str, str]
    _owner: str | None = None
    _query: LineQuery = LineQuery()
    # The agents shown, those ended (finished, deleted or refused) and those named but not created yet.
    _agents: dict[str, Agent]
    _done: set[str]
    _awaited: set[str]
    _cursors: dict[str, int]

    async def get(self) -> None:
        """Replay each agent from its cursor, then follow all of them live."""
        principal = self.principal
        principal.require("logs:read")
        ids = list(dict.fromkeys(self.get_query_arguments("agent")))
        wanted = parse_label_arguments(self.get_query_arguments("label"))
        if not ids and not wanted:
            raise BadRequest("name the agents with ?agent=ID (repeatable) or ?label=key=value")
        if principal.agent is not None and (wanted or set(ids) != {principal.agent}):
            raise Forbidden("a stream ticket reads only its own agent", code="not_owner")
        wait = self.wait_argument()
        agents: dict[str, Agent] = {}
        refused: set[str] = set()
        for agent_id in ids:
            if not wait:
                agents[agent_id] = await self.agent_for(agent_id)
                continue
            # With ?wait=1 a missing agent is waited for, and another user's gets a not_owner end of its own.
            check_agent_id(agent_id)
            agent = await self.store.get_agent(agent_id)
            if agent is not None and principal.may_access(agent.owner, agent.id):
                agents[agent_id] = agent
            elif agent is not None:
                refused.add(agent_id)
        query = query_from_arguments(self)
        raw = self.resume_argument()
        try:
            sse.parse_cursor(self.query_argument("after") or "")
            cursors = sse.parse_cursor(raw) if raw else {}
        except ValueError as exc:
            raise BadRequest(f"the resume point is not a stream cursor: {exc}") from None
        owner = None if principal.is_admin else principal.subject
        if wanted:
            for agent in await self.store.list_agents(owner, labels=wanted, limit=10000):
                agents.setdefault(agent.id, agent)
        # Only an agent list can be over: a label stream waits for agents that join later.
        if (
            raw
            and not wanted
            and all(
                agent_id in refused
                or (
                    agent_id in agents
                    and agents[agent_id].finished
                    and cursors.get(agent_id, 0) == agents[agent_id].last_seq
                )
                for agent_id in ids
            )
        ):
            self.set_status(204)
            return

        def matcher(agent: Agent) -> bool:
            return bool(wanted) and agent.matches_labels(wanted) and principal.may_access(agent.owner, agent.id)

        self._named, self._wanted, self._owner, self._query = frozenset(ids), wanted, owner, query
        self.open_subscription(set(ids) | set(agents), matcher if wanted else None)
        await self.run(lambda: self._follow(ids, cursors, wait))

    async def _follow(self, ids: list[str], cursors: dict[str, int], wait: bool) -> None:
        found: dict[str, Agent] = {}
        for agent_id in ids:
            agent = await self.store.get_agent(agent_id)
            if agent is not None:
                found[agent_id] = agent
        if self._wanted:
            for agent in await self.store.list_agents(self._owner, labels=self._wanted, limit=10000):
                found.setdefault(agent.id, agent)
        # Cursors past an agent's last line belong to a deleted agent of the same id, and those of an agent that
        # does not exist (yet) to one deleted before: start those over.
        self._cursors = {
            agent_id: seq for agent_id, seq in cursors.items() if agent_id in found and seq <= found[agent_id].last_seq
        }
        self._agents, self._done = {}, set()
        self._awaited = {agent_id for agent_id in ids if agent_id not in found} if wait else set()
        for agent in found.values():
            await self._join(agent)
        while self._wanted or self._awaited or not self._done >= set(self._agents):
            items = await self.next_items(sse.comment("heartbeat"))
            if isinstance(items, str):
                if items in STOP_REASONS:
                    extra = {"final": False, "reason": items}
                    await self.send(sse.logs_event([], "running", event_id=self._cursor_id(), extra=extra))
                return
            await self._apply(items)

    async def _apply(self, items: list[Any]) -> None:
        """Send what a batch of queued items says: lines, agents joining, ending or missed commits."""
        cursors = self._cursors
        lines: list[Line] = []
        for item in items:
            agent_id = "" if isinstance(item, Resync) else item.agent if isinstance(item, Line) else item.agent.id
            known = agent_id in self._agents
            if isinstance(item, Line) and known and item.seq <= cursors.get(agent_id, 0) + 1:
                if item.seq > cursors.get(agent_id, 0):
                    cursors[agent_id] = item.seq
                    if self._query.matches(item):
                        lines.append(item)
                continue
            if isinstance(item, Line) and not known and agent_id not in self._awaited:
                continue  # an agent refused, or one this stream does not show
            # Anything else may send events of its own: the lines so far go first (their cursors are in every id).
            if lines:
                await self.send(self._event(lines))
                lines = []
            if isinstance(item, Resync | Line):
                # Commits were missed (the bus was down), arrived out of order, or an awaited agent logged before
                # its creation reached this stream: read them from storage.
                ids = [agent_id] if isinstance(item, Line) else [*self._agents, *self._awaited]
                if isinstance(item, Resync) and self._wanted:
                    ids += [a.id for a in await self.store.list_agents(self._owner, labels=self._wanted, limit=10000)]
                await self._reread(ids)
            elif not known:
                if not item.deleted and agent_id not in self._done:
                    # Created since the stream opened (an awaited id) or now matching its labels.
                    await self._join(item.agent)
            else:
                agent = self._agents[agent_id] = item.agent
                if agent_id not in self._done and (item.deleted or agent.finished):
                    self._done.add(agent_id)
                    await self.send(self._final(agent, deleted=item.deleted))
        if lines:
            await self.send(self._event(lines))

    async def _join(self, agent: Agent) -> None:
        """Start showing an agent: its stored lines after its cursor, and its end if it has ended. An agent the
        caller may not read shows nothing; if the stream named it, it gets a final event saying not_owner."""
        self._awaited.discard(agent.id)
        if not self.principal.may_access(agent.owner, agent.id):
            if agent.id in self._named and agent.id not in self._done:
                self._done.add(agent.id)
                extra = {"final": True, "agent": agent.id, "reason": "not_owner"}
                await self.send(sse.logs_event([], None, event_id=self._cursor_id(), extra=extra))
            return
        self._agents[agent.id] = agent
        await self._catch_up(agent)
        if agent.finished:
            self._done.add(agent.id)
            await self.send(self._final(agent))

    async def _reread(self, ids: list[str]) -> None:
        """Bring each agent up to date from storage: its missed lines, and its end if it finished or went."""
        for agent_id in dict.fromkeys(ids):
            if agent_id in self._done:
                continue
            known = self._agents.get(agent_id)
            fresh = await self.store.get_agent(agent_id)
            if fresh is None or (known is not None and fresh.pk != known.pk):
                if known is not None:
                    self._done.add(agent_id)
                    await self.send(self._final(known, deleted=True))
                continue
            if known is None:
                await self._join(fresh)
                continue
            self._agents[agent_id] = fresh
            await self._catch_up(fresh)
            if fresh.finished:
                self._done.add(agent_id)
                await self.send(self._final(fresh))

    async def _catch_up(self, agent: Agent) -> None:
        """Replay the agent's stored lines after its cursor, up to its last seq, page by page."""
        cursors = self._cursors
        cursor = cursors.get(agent.id, 0)
        upto = agent.last_seq
        while cursor < upto:
            page = await self.store.lines_after(agent, cursor, upto=upto, limit=CATCH_UP_PAGE, query=self._query)
            cursor = page[-1].seq if len(page) == CATCH_UP_PAGE else upto
            cursors[agent.id] = cursor
            if page:
                await self.send(self._event(page))
        cursors[agent.id] = max(cursor, upto)

    def _cursor_id(self) -> str:
        return sse.format_cursor(self._cursors)

    def _event(self, lines: list[Line]) -> bytes:
        return sse.logs_event(lines, "running", event_id=self._cursor_id())

    def _final(self, agent: Agent, *, deleted: bool = False) -> bytes:
        extra: dict[str, Any] = {"final": True, "agent": agent.id}
        if deleted or agent.reason:
            extra["reason"] = "deleted" if deleted else agent.reason
        return sse.logs_event([], agent.status, event_id=self._cursor_id(), extra=extra)
