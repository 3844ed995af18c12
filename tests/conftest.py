"""What the tests share: a real Sentra server on an ephemeral loopback port, tokens signed independently with
pyjwt, an SSE reader as the EventSource spec reads, and the API calls tests make again and again.

Sentra as a child process lives in processes.py; real PostgreSQL and Redis servers in pg_service.py and
redis_service.py; real browsers in browsers.py."""

from __future__ import annotations

import asyncio
import io
import json
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import settings as hypothesis_settings

from sentra.config import load_config
from sentra.serve import serve

# Fixtures that start Sentra children, real PostgreSQL and Redis servers, and real browsers.
pytest_plugins = ["processes", "pg_service", "redis_service", "browsers"]

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"

# httpx builds a TLS context for every client it makes (about 25 ms: it loads the CA bundle), and the tests make
# thousands; they speak plain HTTP to loopback, so one context, never used, serves every client.
TLS = ssl.create_default_context()

# Property tests draw the same examples every run, so a red run means a change broke something;
# SENTRA_FUZZ_RANDOM=1 lets them explore new ones.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", database=None)
hypothesis_settings.load_profile("explore" if os.environ.get("SENTRA_FUZZ_RANDOM") == "1" else "repeatable")


def make_token(sub: str = "alice", *, secret: str = SECRET, **claims: Any) -> str:
    """A token made with pyjwt alone, independent of Sentra's own helper."""
    payload: dict[str, Any] = {"sub": sub, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm="HS256")


@dataclass
class RunningServer:
    """A server started by a test: its URL, settings and a way to stop it."""

    url: str
    port: int
    db: Path
    stop: asyncio.Event
    task: asyncio.Task[None]
    output: io.StringIO
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, sub: str = "alice", **claims: Any) -> str:
        """A fresh token for `sub` (cached per subject when no claims are given)."""
        if claims:
            return make_token(sub, **claims)
        if sub not in self.tokens:
            self.tokens[sub] = make_token(sub)
        return self.tokens[sub]

    def headers(self, sub: str = "alice", **claims: Any) -> dict[str, str]:
        """An Authorization header for `sub`."""
        return {"Authorization": f"Bearer {self.token(sub, **claims)}"}

    def client(self, sub: str | None = "alice", **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client on this server, authenticated as `sub` (None: no credentials)."""
        headers = self.headers(sub) if sub is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0, verify=TLS, **kwargs)

    async def shutdown(self) -> None:
        """Stop the server as SIGTERM would, and wait for it."""
        self.stop.set()
        await asyncio.wait_for(self.task, 20)


ServerFactory = Callable[..., Awaitable[RunningServer]]


@asynccontextmanager
async def running_server(db: Path, *, own_gc: bool = False, **settings: Any) -> AsyncIterator[RunningServer]:
    """Start serve() in this event loop on 127.0.0.1:0 with the given dotted settings (`own_gc` as the CLI's)."""
    overrides: dict[str, Any] = {
        "server.port": 0,
        "storage.db": str(db),
        "auth.jwt_secret": SECRET,
        "server.access_log": False,
    }
    overrides.update(settings)
    config = load_config(None, overrides)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    output = io.StringIO()
    task = asyncio.create_task(serve(config, out=output, stop=stop, on_ready=ready.set_result, own_gc=own_gc))
    done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    port = ready.result()
    server = RunningServer(f"http://127.0.0.1:{port}", port, db, stop, task, output)
    try:
        yield server
    finally:
        if not task.done():
            await server.shutdown()


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """A factory: `await start_server(**{"limits.max_body_size": 1024})` starts one more server."""
    stack: list[Any] = []
    count = 0

    async def start(**settings: Any) -> RunningServer:
        nonlocal count
        count += 1
        db = settings.pop("db", tmp_path / f"sentra-{count}.db")
        manager = running_server(Path(db), **settings)
        stack.append(manager)
        return await manager.__aenter__()

    yield start
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    """One running server with default settings and a known HS256 secret."""
    return await start_server()


@pytest.fixture
async def alice(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as alice."""
    async with server.client("alice") as client:
        yield client


@pytest.fixture
async def bob(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as bob."""
    async with server.client("bob") as client:
        yield client


@dataclass
class Event:
    """One parsed SSE event."""

    data: str
    id: str | None = None
    event: str | None = None

    def json(self) -> Any:
        """The data as JSON."""
        return json.loads(self.data)


class SSEReader:
    """Parses an SSE byte stream exactly as the EventSource spec says (fields, blank-line dispatch)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.retry: int | None = None
        self.comments: list[str] = []

    async def next(self, timeout: float = 5.0) -> Event | None:
        """The next event, or None when the server closes the stream."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Event | None:
        data: list[str] = []
        event_id: str | None = None
        name: str | None = None
        async for line in self._lines:
            if line == "":
                if data:
                    return Event("\n".join(data), event_id, name)
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data.append(value)
            elif key == "id":
                event_id = value
            elif key == "event":
                name = value
            elif key == "retry" and value.isdigit():
                self.retry = int(value)
        return None

    async def collect_until_closed(self, timeout: float = 10.0) -> list[Event]:
        """Every remaining event until the server closes the stream."""
        events: list[Event] = []
        while True:
            event = await self.next(timeout)
            if event is None:
                return events
            events.append(event)


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str, *, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[SSEReader]:
    """Open an SSE stream and yield a reader (the status is checked by the caller via reader.response)."""
    async with client.stream("GET", path, headers=headers or {}, params=params or None, timeout=30.0) as response:
        # Held here so the line iterator lives as long as the block, even if the test drops the reader.
        reader = SSEReader(response)
        yield reader


# ---- the API as a test calls it ----------------------------------------------------------------------------


def error_of(response: httpx.Response) -> dict[str, str]:
    """The {"code", "message"} of an error answer (and a check that it is Sentra's JSON error)."""
    assert response.headers["content-type"] == "application/json; charset=utf-8", response.headers
    return dict(response.json()["error"])


async def post_lines(
    client: httpx.AsyncClient, agent_id: str, lines: list[Any], *, headers: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """POST a batch (a string is a line's message, with `extra` fields; a dict is the line) and return the answer."""
    body = [{"message": line, **extra} if isinstance(line, str) else line for line in lines]
    response = await client.post(f"/api/agents/{agent_id}/logs", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def create_agent(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """POST /api/agents with `body`; the new agent."""
    response = await client.post("/api/agents", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def set_status(client: httpx.AsyncClient, agent_id: str, status: str) -> None:
    """Mark an agent completed, failed or running."""
    response = await client.patch(f"/api/agents/{agent_id}", json={"status": status})
    assert response.status_code == 200, response.text


def stream_path(agent_id: str) -> str:
    """The SSE stream of one agent."""
    return f"/api/agents/{agent_id}/logs/stream"


def messages(lines: list[dict[str, Any]]) -> list[str]:
    """The messages of stored lines (a history page's), in order."""
    return [line["message"] for line in lines]


def server_size(line: dict[str, Any]) -> int:
    """A stored line's size as Sentra measures it against limits.max_line_size."""
    fields = json.dumps(line["fields"], ensure_ascii=False).encode() if line["fields"] else b""
    return len(line["message"].encode()) + len(fields)


def messages_of(events: list[Event]) -> list[str]:
    """The messages of every line the events carried, in order."""
    return messages([line for event in events for line in event.json()["lines"]])


def seqs_of(events: list[Event]) -> list[int]:
    """The seqs of every line the events carried, in order."""
    return [line["seq"] for event in events for line in event.json()["lines"]]


async def read_lines(stream: SSEReader, wanted: int, timeout: float = 10.0) -> list[Event]:
    """Events until `wanted` lines have come (a stream may coalesce lines into one event), within `timeout` s."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(seqs_of(events)) < wanted:
        event = await stream.next(max(0.1, deadline - time.monotonic()))
        assert event is not None, f"the stream closed after {seqs_of(events)}"
        events.append(event)
    return events


def cursor_of(event: Event) -> dict[str, int]:
    """A multi-agent stream's event id as the documented cursor `agentA=5,agentB=7`."""
    assert event.id is not None
    return {part.rpartition("=")[0]: int(part.rpartition("=")[2]) for part in event.id.split(",") if part}


def tagged(events: list[Event]) -> list[tuple[str, str]]:
    """(agent, message) of every line a multi-agent stream's events carried."""
    return [(line["agent"], line["message"]) for event in events for line in event.json()["lines"]]


async def read_until_final(stream: SSEReader, *agent_ids: str) -> list[Event]:
    """Events until each of `agent_ids` has had its final event (a label stream stays open after them)."""
    events: list[Event] = []
    ended: set[str] = set()
    while ended != set(agent_ids):
        event = await stream.next(10)
        assert event is not None, f"the stream closed after {[e.data for e in events]}"
        events.append(event)
        if event.json().get("final"):
            ended.add(event.json()["agent"])
    return events
