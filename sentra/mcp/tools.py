"""The tools Sentra offers an assistant over MCP: read-only views of the agents and lines the caller may read through
the HTTP API (the same reads, sentra.reads), each with a JSON Schema for its arguments and one for its structured
result, and a text rendering an assistant reads well. A tool's failure (a bad argument, no such agent, another user's
agent) is its result, marked isError, with the message the HTTP API would give."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sentra.auth import Principal
from sentra.errors import ApiError, TooManyRequests
from sentra.lines import AGENT_ID_RE, LEVELS, STATUSES
from sentra.mcp import follow
from sentra.mcp.arguments import Param, input_schema, read_arguments
from sentra.mcp.text import agent_details, agent_summary, line_text, lines_text
from sentra.reads import LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT, checked_agent, history_page, visible_agents
from sentra.registry import Subscription
from sentra.schemas import obj, resource_schemas, t
from sentra.search import SearchFilters, search_lines
from sentra.services import Services
from sentra.storage.base import LineQuery

MAX_LINES = 1000  # the most lines one result carries: an assistant's context is far smaller than a log
DEFAULT_LINES = 100
DEFAULT_SEARCH_LINES = 50
WAIT_DEFAULT_S = 30.0
WAIT_MAX_S = 60.0

AGENT = resource_schemas()["Agent"]
LINE = resource_schemas()["Line"]
LINES = t("array", "Ascending seq (search: newest first).", items=LINE)


@dataclass(slots=True)
class ToolContext:
    """What a tool call runs with: the app's services, the caller, and the subscriptions its waits hold (ended
    together when the client goes away)."""

    services: Services
    principal: Principal
    subscriptions: set[Subscription] = field(default_factory=set)

    def subscribe(self, agent_id: str) -> Subscription:
        """Follow `agent_id` in the topic registry; like a stream, it counts against limits.max_streams_per_user."""
        config, registry, principal = self.services.config, self.services.registry, self.principal
        limit = config["limits.max_streams_per_user"]
        if registry.streams_of(principal.subject) >= limit:
            raise TooManyRequests(f"{limit} streams are already open for this user; close one first")
        sub = Subscription(
            principal.subject,
            token_ids=(principal.jti, principal.parent_jti),
            agent_ids={agent_id},
            max_pending=config["limits.subscriber_buffer"],
        )
        registry.subscribe(sub)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop following."""
        self.services.registry.unsubscribe(sub)
        self.subscriptions.discard(sub)

    def cancel(self) -> None:
        """The client went away: end every wait now."""
        for sub in list(self.subscriptions):
            sub.cut("closed")


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A tool's answer: text for the assistant, and the same as structured content."""

    text: str
    structured: dict[str, Any]


Run = Callable[[ToolContext, dict[str, Any]], Awaitable[ToolOutput]]


@dataclass(frozen=True, slots=True)
class Tool:
    """One tool: its name, what it is for, its arguments, the schema of its structured result, and its body."""

    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    output_schema: dict[str, Any]
    run: Run

    def listing(self) -> dict[str, Any]:
        """The tool as tools/list shows it."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": input_schema(self.params),
            "outputSchema": self.output_schema,
            "annotations": {"title": self.title, "readOnlyHint": True, "openWorldHint": False},
        }

    async def call(self, context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tools/call result: the output, or the failure as a result with isError (so the assistant reads why)."""
        try:
            output = await self.run(context, read_arguments(self.params, arguments))
        except ApiError as exc:
            return {"content": [{"type": "text", "text": exc.message}], "isError": True}
        return {
            "content": [{"type": "text", "text": output.text}],
            "structuredContent": output.structured,
            "isError": False,
        }


# ---- the arguments ------------------------------------------------------------------------------

AGENT_ID = Param(
    "agent_id", "string", "The agent's id, as list_agents shows it.", required=True, pattern=f"^{AGENT_ID_RE.pattern}$"
)
LEVEL = Param("level", "string", "Only lines at this level or above.", enum=tuple(LEVELS))
LABEL = Param("label", "string", "Only agents with this label, as key=value (e.g. team=ml).", pattern="^[^=]+=")


def lines_limit(default: int) -> Param:
    """The `limit` argument of a tool that answers lines."""
    return Param("limit", "integer", "The most lines to return.", default=default, minimum=1, maximum=MAX_LINES)


def query_of(arguments: dict[str, Any]) -> LineQuery:
    """The level and q filters of a tool's arguments, as a history read takes them."""
    level = arguments["level"]
    return LineQuery(min_level=LEVELS[level] if level else 0, q=arguments.get("q") or "")


def labels_of(arguments: dict[str, Any]) -> dict[str, str]:
    """The label filter of a tool's arguments (LABEL's pattern has checked that it is key=value)."""
    if not arguments["label"]:
        return {}
    key, _, value = arguments["label"].partition("=")
    return {key: value}


# ---- the tools ----------------------------------------------------------------------------------


async def list_agents(context: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
    """The caller's agents, newest first."""
    limit = arguments["limit"]
    agents = await visible_agents(
        context.services.store,
        context.principal,
        status=arguments["status"],
        labels=labels_of(arguments),
        limit=limit + 1,
    )
    more, agents = len(agents) > limit, agents[:limit]
    if not agents:
        text = "No agent matches." if arguments["status"] or arguments["label"] else "No agents yet."
    else:
        tail = f" (more exist: raise limit, at most {LIST_MAX_LIMIT}, or filter)" if more else ""
        text = f"{len(agents)} agents, newest first{tail}:\n" + "\n".join(agent_summary(a) for a in agents)
    return ToolOutput(text, {"agents": [agent.to_json() for agent in agents], "more": more})


async def get_agent(context: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
    """One agent."""
    agent = await checked_agent(context.services.store, context.principal, arguments["agent_id"])
    return ToolOutput(agent_details(agent), agent.to_json())


async def read_logs(context: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
    """A page of one agent's history."""
    store = context.services.store
    agent = await checked_agent(store, context.principal, arguments["agent_id"])
    page = await history_page(
        store,
        agent,
        after=arguments["after"],
        before=arguments["before"],
        limit=arguments["limit"],
        query=query_of(arguments),
    )
    agent = store.cached_agent(agent.id) or agent
    extent = f"lines {agent.first_seq} to {agent.last_seq}" if agent.line_count else "no lines yet"
    summary = f"{agent.id} ({agent.status}) has {extent}"
    if not page.lines:
        text = f"No lines match. {summary}."
    else:
        text = f"{summary}; {len(page.lines)} shown:\n{lines_text(page.lines)}"
        if page.next_before is not None:
            text += f"\nEarlier lines: before={page.next_before}."
        if page.next_after is not None:
            text += f"\nLater lines: after={page.next_after}."
    if not agent.finished:
        text += f"\nTo follow the run: wait_for_lines with after={agent.last_seq}."
    return ToolOutput(text, {"agent_id": agent.id, "status": agent.status, **page.to_json()})


async def search_logs(context: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
    """Lines across the caller's agents."""
    filters = SearchFilters(query_of(arguments).min_level, labels=labels_of(arguments))
    found = await search_lines(
        context.services.store, context.principal, arguments["q"], filters, limit=arguments["limit"]
    )
    more = found.next_cursor is not None
    if not found.lines:
        text = f"No line matches {arguments['q']!r}."
    else:
        shown = "\n".join(line_text(line, with_agent=True) for line in found.lines)
        tail = " (more match: raise limit, at most 1000, or narrow)" if more else ""
        text = f"{len(found.lines)} lines matching {arguments['q']!r}, newest first{tail}:\n{shown}"
    return ToolOutput(text, {"lines": [line.to_json() for line in found.lines], "more": more})


async def wait_for_lines(context: ToolContext, arguments: dict[str, Any]) -> ToolOutput:
    """An agent's next lines, its end, or a timeout."""
    store = context.services.store
    agent = await checked_agent(store, context.principal, arguments["agent_id"])
    after, timeout = arguments["after"], float(arguments["timeout_s"])
    sub = context.subscribe(agent.id)  # before storage is read, so no line committed meanwhile is missed
    try:
        found = await follow.next_lines(store, sub, agent, after, timeout=timeout, limit=arguments["limit"])
    finally:
        context.unsubscribe(sub)
    agent, lines = found.agent, found.lines
    next_after = lines[-1].seq if lines else after
    if found.reason == follow.NEW_LINES:
        text = f"{len(lines)} new lines of {agent.id} ({agent.status}):\n{lines_text(lines)}"
        text += f"\nTo keep following: wait_for_lines with after={next_after}."
    elif found.reason == follow.FINISHED:
        ended = f"{agent.id} has {agent.status}" + (f" ({agent.reason})" if agent.reason else "")
        text = f"{ended}; its last lines:\n{lines_text(lines)}" if lines else f"{ended}; no line after seq {after}."
    elif found.reason == follow.DELETED:
        text = f"{agent.id} was deleted."
    else:
        text = f"No new line of {agent.id} within {timeout:g} s; it is still {agent.status}."
        text += f" Call again with after={after}."
    return ToolOutput(
        text,
        {
            "agent_id": agent.id,
            "status": agent.status,
            "reason": found.reason,
            "lines": [line.to_json() for line in lines],
            "next_after": next_after,
        },
    )


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "list_agents",
            "List agent runs",
            "List the agent runs you can read, newest first: id, name, status (running, completed, failed), line "
            "count, last activity and labels. Filter by status or by one label (key=value). Use an id from here with "
            "get_agent, read_logs or wait_for_lines.",
            (
                Param("status", "string", "Only agents with this status.", enum=STATUSES),
                LABEL,
                Param(
                    "limit",
                    "integer",
                    "The most agents to return.",
                    default=LIST_DEFAULT_LIMIT,
                    minimum=1,
                    maximum=LIST_MAX_LIMIT,
                ),
            ),
            obj({"agents": t("array", "Newest first.", items=AGENT), "more": t("boolean", "Older agents exist.")}, "*"),
            list_agents,
        ),
        Tool(
            "get_agent",
            "Show an agent run",
            "Show one agent run: its status and why it ended, owner, labels, how many lines it has (seq first to "
            "last) and when it was created, updated and last logged.",
            (AGENT_ID,),
            AGENT,
            get_agent,
        ),
        Tool(
            "read_logs",
            "Read an agent's logs",
            "Read an agent's log lines in seq order, each with seq, time, level, source, message and fields. With "
            "no cursor: its first lines; after=N: the lines after seq N; before=N: the lines just before seq N (the "
            "newest lines: before = last_seq + 1, last_seq from get_agent). Filter by minimum level and by q, "
            "words as search_logs reads them.",
            (
                AGENT_ID,
                Param("after", "integer", "Only lines after this seq.", minimum=0),
                Param("before", "integer", "The lines just before this seq (not with after).", minimum=0),
                lines_limit(DEFAULT_LINES),
                LEVEL,
                Param("q", "string", "Only lines with these words, as search_logs reads them."),
            ),
            obj(
                {
                    "agent_id": t("string"),
                    "status": t("string", enum=list(STATUSES)),
                    "lines": LINES,
                    "next_after": t(["integer", "null"], "after= for the next page; null: no more."),
                    "next_before": t(["integer", "null"], "before= for the page before; null: no more."),
                },
                "*",
            ),
            read_logs,
        ),
        Tool(
            "search_logs",
            "Search logs across agents",
            "Search the log lines of all your agent runs, newest first, each with its agent id and seq. A line "
            'matches when every word of q is in its message or a field value, whatever the case; "quoted words" '
            "must stand together, word* matches the start of words. Narrow by minimum level or one label (key=value).",
            (
                Param("q", "string", "The words to look for.", required=True, min_length=1),
                LEVEL,
                LABEL,
                lines_limit(DEFAULT_SEARCH_LINES),
            ),
            obj(
                {
                    "lines": LINES,
                    "more": t("boolean", "Older lines match too."),
                },
                "*",
            ),
            search_logs,
        ),
        Tool(
            "wait_for_lines",
            "Follow a running agent",
            "Follow a running agent: returns its lines after seq `after` as soon as there are any, else waits up "
            f"to timeout_s (default {WAIT_DEFAULT_S:g}, at most {WAIT_MAX_S:g}) for new ones. `reason` says why it "
            "returned: lines, finished (the run completed or failed; its last lines come with it), deleted or "
            "timeout. Call again with after=next_after to keep following.",
            (
                AGENT_ID,
                Param("after", "integer", "The last seq already seen (0: from the start).", required=True, minimum=0),
                Param(
                    "timeout_s",
                    "number",
                    "The longest wait, in seconds.",
                    default=WAIT_DEFAULT_S,
                    minimum=0,
                    maximum=WAIT_MAX_S,
                ),
                lines_limit(DEFAULT_LINES),
            ),
            obj(
                {
                    "agent_id": t("string"),
                    "status": t("string", enum=list(STATUSES)),
                    "reason": t("string", enum=list(follow.REASONS)),
                    "lines": LINES,
                    "next_after": t("integer", "after= for the next call.", minimum=0),
                },
                "*",
            ),
            wait_for_lines,
        ),
    )
}
