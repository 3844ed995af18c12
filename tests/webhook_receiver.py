"""A webhook receiver on a loopback port for the webhook tests: it keeps every request it gets and answers each
with the next status of a list it is given (then 204)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets


@dataclass
class Received:
    """One request the receiver got."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


class _Hook(tornado.web.RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def post(self) -> None:
        status = self.receiver.take(self)
        if self.receiver.delay:
            await asyncio.sleep(self.receiver.delay)
        self.set_status(status)
        self.finish()


class Receiver:
    """`async with Receiver([500, 500]) as hook:` — hook.url takes POSTs; hook.received holds them; each is
    answered `delay` seconds after it arrived."""

    def __init__(self, statuses: list[int] | None = None, path: str = "/hook", delay: float = 0.0) -> None:
        self.statuses = deque(statuses or [])
        self.delay = delay
        self.path = path
        self.received: list[Received] = []
        self.port = 0
        self._server: HTTPServer | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        """The URL to register."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    def take(self, request: tornado.web.RequestHandler) -> int:
        """Keep a request as it arrives; the status to answer it with."""
        headers = {name.lower(): value for name, value in request.request.headers.get_all()}
        self.received.append(Received(time.time(), request.request.path, headers, request.request.body))
        self._arrived.set()
        return self.statuses.popleft() if self.statuses else 204

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests, once they have come (AssertionError after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(self.received)} of {count} webhook requests came within {timeout} s")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass
        return self.received[:count]

    async def __aenter__(self) -> Receiver:
        sockets = bind_sockets(self.port, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        app = tornado.web.Application([(r"/.*", _Hook, {"receiver": self})], log_function=lambda handler: None)
        self._server = HTTPServer(app)
        self._server.add_sockets(sockets)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.stop()
        await self._server.close_all_connections()
