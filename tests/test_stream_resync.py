"""Streams recover what the bus did not bring: lines lost while it was down, and lines that overtook others."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import SECRET, make_token, messages_of, open_stream, post_lines, read_lines

from sentra.app import make_app
from sentra.auth import TokenService
from sentra.bus.local import LocalBus
from sentra.config import load_config
from sentra.http.protocol import HTTP1Server
from sentra.lines import Line
from sentra.models import Agent
from sentra.registry import TopicRegistry
from sentra.storage.sqlite import Store


@dataclass
class UnreliableBus(LocalBus):
    """The in-process bus, except that it can go down (losing commits) or hold lines back and deliver them late,
    as a Redis bus does when its connection drops or another process's lines arrive out of order."""

    registry: TopicRegistry
    down: bool = False
    holding: bool = False
    held: list[tuple[Agent, list[Line]]] = field(default_factory=list)

    def lines_committed(self, agent: Agent, lines: list[Line]) -> None:
        if self.down:
            return
        if self.holding:
            self.held.append((agent.copy(), lines))
            return
        super().lines_committed(agent, lines)

    def agent_changed(self, agent: Agent) -> None:
        if not self.down:
            super().agent_changed(agent)

    def release_held(self) -> None:
        """Deliver what was held back, after everything delivered since."""
        held, self.held = self.held, []
        for agent, lines in held:
            super().lines_committed(agent, lines)


@dataclass
class App:
    url: str
    bus: UnreliableBus
    registry: TopicRegistry

    def client(self, sub: str = "alice") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {make_token(sub)}"})


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    config = load_config(None, {"storage.db": str(tmp_path / "s.db"), "auth.jwt_secret": SECRET})
    store = Store(tmp_path / "s.db")
    await store.open()
    registry = TopicRegistry()
    bus = UnreliableBus(registry)
    store.listener = bus
    server = HTTP1Server(make_app(config, store, registry, TokenService(config)), max_body_size=1 << 20)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    await server.add_sockets([sock])
    try:
        yield App(f"http://127.0.0.1:{sock.getsockname()[1]}", bus, registry)
    finally:
        server.stop()
        registry.cut_all("shutdown")
        await asyncio.sleep(0.05)
        await server.close_all_connections()
        await store.close()


async def test_lines_lost_while_the_bus_was_down_arrive_after_a_resync(app: App) -> None:
    async with app.client() as alice:
        await post_lines(alice, "run-1", ["one"])
        async with open_stream(alice, "/api/agents/run-1/logs/stream") as reader:
            assert messages_of(await read_lines(reader, 1)) == ["one"]
            app.bus.down = True
            await post_lines(alice, "run-1", ["two", "three"])
            app.bus.down = False
            app.registry.resync_all()
            await post_lines(alice, "run-1", ["four"])
            events = await read_lines(reader, 3)
            assert messages_of(events) == ["two", "three", "four"]
            assert events[-1].id == "4"


async def test_a_line_that_overtakes_earlier_ones_does_not_open_a_gap(app: App) -> None:
    async with app.client() as alice:
        await post_lines(alice, "run-1", ["one"])
        async with open_stream(alice, "/api/agents/run-1/logs/stream") as reader:
            await read_lines(reader, 1)
            app.bus.holding = True
            await post_lines(alice, "run-1", ["two"])
            await post_lines(alice, "run-1", ["three"])
            app.bus.holding = False
            # "four" reaches the stream before "two" and "three": the stream reads those from storage first.
            await post_lines(alice, "run-1", ["four"])
            app.bus.release_held()
            await post_lines(alice, "run-1", ["five"])
            events = await read_lines(reader, 4)
            assert messages_of(events) == ["two", "three", "four", "five"]
            assert [line["seq"] for event in events for line in event.json()["lines"]] == [2, 3, 4, 5]


async def test_a_run_that_finished_while_the_bus_was_down_ends_the_stream_after_a_resync(app: App) -> None:
    async with app.client() as alice:
        await post_lines(alice, "run-1", ["one"])
        async with open_stream(alice, "/api/agents/run-1/logs/stream") as reader:
            await read_lines(reader, 1)
            app.bus.down = True
            await post_lines(alice, "run-1", ["last words"])
            response = await alice.patch("/api/agents/run-1", json={"status": "completed"})
            assert response.status_code == 200
            app.bus.down = False
            app.registry.resync_all()
            events = await reader.collect_until_closed()
            assert messages_of(events) == ["last words"]
            assert events[-1].json()["final"] is True
            assert events[-1].json()["status"] == "completed"


async def test_a_multi_agent_stream_recovers_every_agent_after_a_resync(app: App) -> None:
    async with app.client() as alice:
        await post_lines(alice, "a", ["a1"])
        await post_lines(alice, "b", ["b1"])
        async with open_stream(alice, "/api/streams", agent=["a", "b"]) as reader:
            await read_lines(reader, 2)
            app.bus.down = True
            await post_lines(alice, "a", ["a2"])
            await post_lines(alice, "b", ["b2", "b3"])
            app.bus.down = False
            app.registry.resync_all()
            events = await read_lines(reader, 3)
            assert sorted(messages_of(events)) == ["a2", "b2", "b3"]
            assert events[-1].id == "a=2,b=3"


async def test_the_agents_page_gets_a_fresh_snapshot_after_a_resync(app: App) -> None:
    async with app.client() as alice:
        await post_lines(alice, "run-1", ["one"])
        async with open_stream(alice, "/api/agent-events") as reader:
            first = await reader.next(5)
            assert first is not None and first.json()["type"] == "snapshot"
            app.bus.down = True
            await post_lines(alice, "run-2", ["missed while down"])
            app.bus.down = False
            app.registry.resync_all()
            event = await reader.next(5)
            assert event is not None
            assert event.json()["type"] == "snapshot"
            assert sorted(agent["id"] for agent in event.json()["agents"]) == ["run-1", "run-2"]
