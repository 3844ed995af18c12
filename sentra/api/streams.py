"""Server-Sent Event streams: what every stream shares, seed 000's /logs/stream and seed 001's stream-logs route."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import tornado.iostream

from sentra import sse
from sentra.api.base import ApiHandler
from sentra.api.logs import query_from_arguments
from sentra.errors import BadRequest, Forbidden, NotFound, TooManyRequests
from sentra.http.compression import GzipBody, deflate_part
from sentra.lines import Line, check_agent_id
from sentra.models import Agent
from sentra.registry import AgentUpdate, Resync, Subscription
from sentra.storage.base import LineQuery

CATCH_UP_PAGE = 2000
STOP_REASONS = ("token_expired", "token_revoked")


def frame_chunk(data: bytes) -> bytes:
    """`data` as one HTTP/1.1 chunk, built once and written as is to every subscriber that shares it."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def gzip_chunk(coding: GzipBody, chunk: bytes, key: Hashable, shared: dict[Hashable, bytes]) -> bytes:
    """A chunk of events (framed by `frame_chunk`) for a gzip stream: its events deflated once for every stream that
    sends the same batch gzipped (each part of a gzip body stands alone), then counted by this stream's body."""
    events = memoryview(chunk)[chunk.index(b"\r\n") + 2 : -2]
    packed = shared.get((key, "gzip"))
    if packed is None:
        packed = shared[(key, "gzip")] = frame_chunk(deflate_part(events))
    coding.count(events)
    return packed


class _Gone(Exception):
    """The client went away or the stream was cut: stop writing."""


class StreamHandler(ApiHandler):
    """The machinery every stream shares: SSE headers, a subscription, heartbeats, cut-offs, expiry."""

    sub: Subscription | None = None
    watches_close = True  # a stream is over when its reader leaves

    def on_connection_close(self) -> None:
        if self.sub is not None:
            self.sub.cut("closed")

    def resume_argument(self) -> str | None:
        """The resume point: the Last-Event-ID header wins over ?after=."""
        header = self.header("Last-Event-ID")
        if header is not None and header.strip():
            return header.strip()
        # An empty header is what a client with no event yet may send; an empty ?after= is a mistake.
        return self.query_argument("after")

    def wait_argument(self) -> bool:
        """?wait=1: wait for agents that do not exist yet instead of answering 404; 0 (the default) does not."""
        raw = self.query_argument("wait")
        if raw not in (None, "0", "1"):
            raise BadRequest(
                f"query parameter 'wait' must be 1 (wait for an agent that does not exist yet) or 0, not {raw[:40]!r}"
            )
        return raw == "1"

    def open_subscription(self, agent_ids: set[str], matcher: Callable[[Agent], bool] | None = None) -> Subscription:
        """Register a subscription (429 past the per-user limit) before any history is read."""
        principal = self.principal
        limit = self.config["limits.max_streams_per_user"]
        if self.registry.streams_of(principal.subject) >= limit:
            raise TooManyRequests(
                f"{limit} streams are already open for this user; close one first",
                code="too_many_streams",
                headers={"Retry-After": "5"},
            )
        sub = Subscription(
            principal.subject,
            token_ids=(principal.jti, principal.parent_jti),
            agent_ids=agent_ids,
            label_filter=matcher,
            max_pending=self.config["limits.subscriber_buffer"],
        )
        sub.on_cut = self._on_cut
        self.sub = sub
        self.registry.subscribe(sub)
        return sub

    def _on_cut(self, reason: str) -> None:
        # A reader that stopped reading may be parked in a write: closing the socket frees it, and
        # the client resumes from its Last-Event-ID out of SQLite.
        if reason in ("overflow", "closed"):
            self.connection.close()

    async def start_events(self) -> None:
        """Send the SSE headers and the reconnect hint at once, so the client knows it is connected
        even when no line is waiting."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.set_header("Connection", "keep-alive")
        await self.send(sse.retry_hint(int(self.config["streams.retry"] * 1000)))

    async def send(self, data: bytes) -> None:
        """Write, waiting while the connection holds too much; _Gone if the client has left."""
        if self.sub is not None and self.sub.cut_reason in ("overflow", "closed"):
            raise _Gone
        try:
            await self.write(data)
        except tornado.iostream.StreamClosedError:
            raise _Gone from None

    def write_now(self, chunk: bytes, lines: int) -> None:
        """Write one HTTP chunk of events (framed by `frame_chunk`) to the socket without waiting. A reader
        still owing more than the subscriber buffer's worth of earlier lines is too slow and is cut; one
        large batch is not."""
        # Only installed (as the subscription's `direct`) on a chunked response.
        assert self.sub is not None
        refused = self.connection.send_now(chunk, lines, self.sub.max_pending)
        if refused is not None:
            self.sub.cut(refused)

    async def next_items(self, heartbeat: bytes) -> list[Any] | str:
        """Wait for queued items, sending heartbeats; a string is the reason the stream must end."""
        assert self.sub is not None
        expires_at = self.principal.expires_at
        interval = self.config["streams.heartbeat"]
        while True:
            if self.sub.cut_reason is not None:
                return self.sub.cut_reason
            timeout = interval
            if expires_at is not None:
                timeout = min(timeout, expires_at - time.time())
                if timeout <= 0:
                    self.registry.cut(self.sub, "token_expired")
                    return "token_expired"
            if await self.sub.wait(timeout):
                if self.sub.cut_reason is not None:
                    return self.sub.cut_reason
                return self.sub.take()
            if expires_at is None or time.time() < expires_at:
                await self.send(heartbeat)

    async def run(self, body: Callable[[], Any]) -> None:
        """Start the event stream and run its body until it ends, the client leaves or the stream is cut."""
        try:
            await self.start_events()
            await body()
        except _Gone:
            pass
        except Exception:
            # At shutdown the store may close under a replay still running; the stream is over anyway.
            if self.sub is None or self.sub.cut_reason != "shutdown":
                raise
        finally:
            if self.sub is not None:
                self.registry.unsubscribe(self.sub)
                # Subscription and handler point at each other: unlinked, both are freed as soon as the
                # connection is, rather than at the next full garbage collection.
                self.sub.on_cut = None
        self.end()


class AgentStreamHandler(StreamHandler):
    """One agent's stream; subclasses choose the wire format."""

    # True: the stream waits for an agent that does not exist yet, as ?wait=1 asks.
    agent_may_be_missing = False
    _agent: Agent | None = None
    _cursor = 0
    _query: LineQuery = LineQuery()

    def encode(self, agent: Agent, lines: Sequence[Line], cursor: int, extra: dict[str, Any]) -> bytes:
        """The event(s) for lines; `extra` carries final/status/reason/skipped."""
        raise NotImplementedError

    def heartbeat(self) -> bytes:
        """What is sent on an idle stream."""
        return sse.comment("heartbeat")

    def refusal(self, cursor: int) -> bytes:
        """The last event of a stream whose awaited agent was created by another user: nothing of it, only why
        the stream ends (empty: the format has no such event, and the stream just closes)."""
        return b""

    async def get(self, agent_id: str) -> None:
        """Open the stream: replay from the resume point out of SQLite, then follow live."""
        principal = self.principal
        principal.require("logs:read")
        check_agent_id(agent_id)
        waits = self.agent_may_be_missing or self.wait_argument()
        agent = await self.store.get_agent(agent_id)
        if agent is None and not waits:
            raise NotFound(f"no agent {agent_id!r}", code="agent_not_found")
        if agent is not None and not principal.may_access(agent.owner, agent.id):
            raise Forbidden(f"agent {agent_id!r} belongs to another user", code="not_owner")
        query = query_from_arguments(self)
        raw = self.resume_argument()
        # ?after= is checked even when a Last-Event-ID header overrides it: a bad URL is still a bad URL.
        for point in (raw, self.query_argument("after")):
            if point is not None and not (point.isascii() and point.isdigit() and len(point) <= 18):
                raise BadRequest(f"the resume point must be a seq number, not {point[:40]!r}")
        resume = int(raw) if raw is not None else None
        tail = self.int_argument("tail")
        if agent is not None and agent.finished and resume == agent.last_seq:
            self.set_status(204)
            return
        self.open_subscription({agent_id})
        await self.run(lambda: self._follow(agent_id, resume, tail, query))

    async def _follow(self, agent_id: str, resume: int | None, tail: int | None, query: LineQuery) -> None:
        assert self.sub is not None
        agent = await self.store.get_agent(agent_id)
        if agent is not None and not self.principal.may_access(agent.owner, agent.id):
            # Created by another user since the request was checked (or while it waited): the reconnect gets its 403.
            await self._refuse()
            return
        # A resume point past the last line belongs to an agent deleted and created anew under the same id.
        cursor = resume if agent is not None and resume is not None and resume <= agent.last_seq else 0
        held: list[Line] = []
        extra: dict[str, Any] = {}
        if agent is not None:
            # While replaying, lines that arrive are not the reader's fault: if too many wait, the queue
            # drops them and the replay reads on from SQLite instead of cutting the stream (see Subscription).
            self.sub.replaying = True
            upto = agent.last_seq
            if tail is not None and resume is None:
                held = await self.store.lines_before(agent, upto + 1, limit=tail, query=query) if tail else []
                cursor = upto
            elif cursor + 1 < agent.first_seq:
                extra = {"skipped": agent.first_seq - cursor - 1, "first_seq": agent.first_seq}
            while True:
                while cursor < upto:
                    page = await self.store.lines_after(agent, cursor, upto=upto, limit=CATCH_UP_PAGE, query=query)
                    if held:
                        await self.send(self.encode(agent, held, held[-1].seq, extra))
                        extra = {}
                    held = page
                    cursor = page[-1].seq if len(page) == CATCH_UP_PAGE else upto
                if not self.sub.resync:
                    break
                self.sub.resync = False
                upto = (self.store.cached_agent(agent_id) or agent).last_seq
            self.sub.replaying = False
            if agent.finished:
                await self.send(self.encode(agent, held, cursor, {**extra, "final": True}))
                return
            if held or extra:
                await self.send(self.encode(agent, held, cursor, extra))
        self._cursor, self._agent, self._query = cursor, agent, query
        while True:
            if self._agent is not None and not self.sub.pending and self.connection.chunked:
                # Caught up: from here on lines are written as they are committed, without a wake-up
                # (as HTTP chunks framed once for every subscriber: an HTTP/1.0 reader takes the slow path).
                self.sub.direct = self._deliver
            items = await self.next_items(self.heartbeat())
            self.sub.direct = None
            agent, cursor = self._agent, self._cursor
            if isinstance(items, str):
                if items in STOP_REASONS and agent is not None:
                    await self.send(self.encode(agent, [], cursor, {"final": False, "reason": items}))
                return
            lines: list[Line] = []
            for item in items:
                if agent is None or isinstance(item, Resync) or (isinstance(item, Line) and item.seq > cursor + 1):
                    # The awaited agent may have appeared (its access is checked, and the lines its creating
                    # request committed are read), commits were missed (the bus was down) or another process's
                    # lines overtook these: storage has every committed line, so read from there.
                    if lines and agent is not None:
                        await self.send(self.encode(agent, lines, cursor, {}))
                        lines = []
                    if not await self._reread(agent_id, query):
                        return
                    agent, cursor = self._agent, self._cursor
                elif isinstance(item, AgentUpdate):
                    agent = self._agent = item.agent
                    if item.deleted or agent.finished:
                        extra = {"final": True, "reason": "deleted"} if item.deleted else {"final": True}
                        await self.send(self.encode(agent, lines, cursor, extra))
                        return
                elif item.seq > cursor:
                    cursor = self._cursor = item.seq
                    if query.matches(item):
                        lines.append(item)
            if lines and agent is not None:
                await self.send(self.encode(agent, lines, cursor, {}))

    async def _reread(self, agent_id: str, query: LineQuery) -> bool:
        """Catch up from storage after the cursor; False once the stream has ended (finished or gone)."""
        agent, cursor = self._agent, self._cursor
        fresh = await self.store.get_agent(agent_id)
        if fresh is None or (agent is not None and fresh.pk != agent.pk):
            if agent is not None:
                await self.send(self.encode(agent, [], cursor, {"final": True, "reason": "deleted"}))
                return False
            return True
        if agent is None and not self.principal.may_access(fresh.owner, fresh.id):
            await self._refuse()
            return False
        while cursor < fresh.last_seq:
            page = await self.store.lines_after(fresh, cursor, upto=fresh.last_seq, limit=CATCH_UP_PAGE, query=query)
            cursor = page[-1].seq if len(page) == CATCH_UP_PAGE else fresh.last_seq
            if page:
                await self.send(self.encode(fresh, page, cursor, {}))
        self._agent, self._cursor = fresh, cursor
        if fresh.finished:
            await self.send(self.encode(fresh, [], cursor, {"final": True}))
            return False
        return True

    async def _refuse(self) -> None:
        """End a stream whose agent turned out to be another user's, saying so where the format can."""
        data = self.refusal(self._cursor)
        if data:
            await self.send(data)

    def _deliver(self, lines: Sequence[Line], shared: dict[Hashable, bytes]) -> None:
        """Write committed lines straight to the socket (called by the registry at publish time)."""
        agent, cursor, query = self._agent, self._cursor, self._query
        if agent is None or lines[-1].seq <= cursor:
            return
        if lines[0].seq > cursor + 1:
            # A gap: the reader fills it from storage first (see _follow).
            assert self.sub is not None
            self.sub.direct = None
            self.sub.push_lines(lines)
            return
        fresh = lines if lines[0].seq > cursor else [line for line in lines if line.seq > cursor]
        self._cursor = fresh[-1].seq
        shown = fresh if query.is_empty else [line for line in fresh if query.matches(line)]
        if not shown:
            return
        # Every subscriber of the same format and filters writes the very same bytes for this batch.
        key = (type(self), query.min_level, query.q, fresh[0].seq, fresh[-1].seq)
        data = shared.get(key)
        if data is None:
            data = shared[key] = frame_chunk(self.encode(agent, shown, self._cursor, {}))
        if self.coding is not None:
            data = gzip_chunk(self.coding, data, key, shared)
        self.write_now(data, len(shown))


class LogStreamHandler(AgentStreamHandler):
    """GET /api/agents/{id}/logs/stream: seed 000's coalesced {"logs", "status", "lines"} events."""

    def encode(self, agent: Agent, lines: Sequence[Line], cursor: int, extra: dict[str, Any]) -> bytes:
        if extra.get("final") is True and agent.reason and "reason" not in extra:
            extra = {**extra, "reason": agent.reason}
        return sse.logs_event(lines, agent.status, event_id=str(cursor), extra=extra)

    def refusal(self, cursor: int) -> bytes:
        # The status is another user's to know: null.
        return sse.logs_event([], None, event_id=str(cursor), extra={"final": False, "reason": "not_owner"})


class Seed001StreamHandler(AgentStreamHandler):
    """GET /api/v1/stream-logs/request/{id}: seed 001's one event per line, heartbeats and an end event."""

    agent_may_be_missing = True

    def heartbeat(self) -> bytes:
        return sse.seed001_heartbeat(time.time())

    def encode(self, agent: Agent, lines: Sequence[Line], cursor: int, extra: dict[str, Any]) -> bytes:
        events = b"".join(sse.seed001_log_event(line, agent) for line in lines)
        if "final" in extra:
            events += sse.seed001_end(agent, event_id=str(cursor), reason=extra.get("reason"))
        return events
