"""The viewer under load and failure, in headless Chromium: 100,000 lines, dropped connections, merged agents."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browsers import VIEWER_SETTINGS, Viewer, close_viewer, expect, open_viewer
from conftest import RunningServer, post_lines, running_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser

# A frame that takes longer than this means the page froze (a non-virtualised 100,000-line DOM takes seconds).
FROZEN_FRAME_MS = 750
# Elements in the whole document while 100,000 lines are loaded: only the rows near the viewport exist.
MAX_DOM_ELEMENTS = 3000


class DroppingProxy:
    """A TCP relay on loopback between the browser and Sentra that can cut every connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {client_writer, upstream_writer}
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, client_writer)),
        ]
        self.tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self.tasks.difference_update(pumps)
        for writer in (client_writer, upstream_writer):
            self.writers.discard(writer)
            writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    def drop_all(self) -> int:
        """Reset every open connection, as a network failure would."""
        dropped = len(self.writers)
        for writer in list(self.writers):
            writer.transport.abort()
        return dropped

    async def close(self) -> None:
        self.drop_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def proxied(server: RunningServer) -> AsyncIterator[tuple[DroppingProxy, str]]:
    proxy = DroppingProxy(server.port)
    await proxy.start()
    try:
        yield proxy, f"http://127.0.0.1:{proxy.port}"
    finally:
        await proxy.close()


async def test_hundred_thousand_lines_load_and_scroll_without_freezing(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "huge", [f"line {seq} of the big run" for seq in range(1, 21)])
    for start in range(20, 100_020, 10_000):
        await post_lines(viewer.api, "huge", [f"line {seq} of the big run" for seq in range(start + 1, start + 10_001)])
    await viewer.sign_in("/?agent=huge")
    # The newest 100,000 lines load; the 20 before them wait for "Load earlier lines". The footer says how many
    # lines the run has, not only how many are loaded.
    await expect(page.locator(".counts")).to_have_text("100,000 of 100,020 lines loaded", timeout=30_000)
    await expect(page.locator(".info-bar")).to_contain_text("Earlier lines are not loaded")
    await expect(page.locator(".row[data-key='huge:100020']")).to_be_in_viewport()

    elements = await page.evaluate("document.getElementsByTagName('*').length")
    assert elements < MAX_DOM_ELEMENTS
    worst_frame = await page.evaluate(
        """async () => {
            const log = document.querySelector('.log');
            const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
            let worst = 0;
            for (let i = 0; i < 30; i += 1) {
                const started = performance.now();
                log.scrollTop = ((i * 7919) % 100) / 100 * log.scrollHeight;
                await frame();
                worst = Math.max(worst, performance.now() - started);
            }
            return worst;
        }"""
    )
    assert worst_frame < FROZEN_FRAME_MS
    assert await page.evaluate("document.getElementsByTagName('*').length") < MAX_DOM_ELEMENTS

    await page.keyboard.press("g")
    await expect(page.locator(".row[data-key='huge:21']")).to_be_in_viewport()
    await page.click(".load-earlier")
    await expect(page.locator(".counts")).to_have_text("100,020 lines")
    await expect(page.locator(".info-bar")).to_be_hidden()
    # The lines that were in view stay in view while the earlier ones are put above them.
    await expect(page.locator(".row[data-key='huge:21']")).to_be_in_viewport()
    await page.keyboard.press("g")
    await expect(page.locator(".row[data-key='huge:1'] .msg")).to_have_text("line 1 of the big run")
    await expect(page.locator(".row[data-key='huge:1']")).to_be_in_viewport()
    # Live lines still arrive, and filtering 100,000 loaded lines answers at once.
    await post_lines(viewer.api, "huge", ["the very last line"])
    await page.keyboard.press("/")
    await page.keyboard.type("very last")
    await expect(page.locator(".match-count")).to_have_text("1 match")
    await expect(page.locator(".row[data-key='huge:100021'] mark.hit")).to_have_text(["very", "last"])  # each word


async def test_reconnect_after_the_connection_drops_has_no_gaps_or_duplicates(
    browser: Any, site: RunningServer
) -> None:
    # A tall window, so every row of this run is rendered and can be read from the DOM.
    tab = await open_viewer(browser, site, viewport={"width": 1000, "height": 3000})
    try:
        async with proxied(site) as (proxy, base):
            await post_lines(tab.api, "flaky", [f"before {i}" for i in range(1, 11)])
            await tab.page.goto(f"{base}/?token={tab.token}")
            await tab.page.goto(f"{base}/?agent=flaky")
            connection = tab.page.locator(".log-page .connection")
            await expect(connection).to_have_attribute("data-state", "connected")
            sent = 10
            for _ in range(3):
                await post_lines(tab.api, "flaky", [f"line {sent + i}" for i in range(1, 6)])
                sent += 5
                await expect(tab.page.locator(f".row[data-key='flaky:{sent}']")).to_be_attached()
                assert proxy.drop_all() > 0
                # Written while the browser is cut off: it must get these after reconnecting.
                await post_lines(tab.api, "flaky", [f"line {sent + i}" for i in range(1, 6)])
                sent += 5
                await expect(tab.page.locator(f".row[data-key='flaky:{sent}']")).to_be_attached(timeout=10_000)
            await expect(connection).to_have_attribute("data-state", "connected")
            await tab.api.patch("/api/agents/flaky", json={"status": "completed"})
            await expect(connection).to_have_text("finished: completed")
            assert await tab.row_keys() == [f"flaky:{seq}" for seq in range(1, sent + 1)]
            await expect(tab.page.locator(".counts")).to_have_text(f"{sent} lines")
    finally:
        await close_viewer(tab)


async def test_connection_state_shows_reconnecting_while_the_server_is_away(browser: Any, tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    async with running_server(db, **VIEWER_SETTINGS) as first:
        port = first.port
        tab = await open_viewer(browser, first)
        await post_lines(tab.api, "patient", ["one"])
        await tab.sign_in("/?agent=patient")
        connection = tab.page.locator(".log-page .connection")
        await expect(connection).to_have_attribute("data-state", "connected")
        await tab.api.aclose()
        await first.shutdown()
        await expect(connection).to_have_attribute("data-state", "reconnecting")
    # Sentra comes back on the same port and database: the stream resumes after line 1.
    async with running_server(db, **{"server.port": port, **VIEWER_SETTINGS}) as second:
        tab.api = second.client(tab.user)
        await expect(connection).to_have_attribute("data-state", "connected", timeout=10_000)
        await post_lines(tab.api, "patient", ["two"])
        await expect(tab.page.locator(".log .row .msg")).to_have_text(["one", "two"])
        await close_viewer(tab)


async def test_merged_view_orders_agents_lines_by_time_and_tags_them(viewer: Viewer) -> None:
    page = viewer.page
    base = time.time() - 100
    for agent, offsets in (("red-team", (0, 2, 4)), ("blue-team", (1, 3, 5))):
        created = await viewer.api.post("/api/agents", json={"id": agent, "name": agent, "labels": {"batch": "7"}})
        assert created.status_code == 201
        await post_lines(viewer.api, agent, [{"message": f"{agent} t{t}", "ts": base + t} for t in offsets])
    await viewer.sign_in("/?agent=red-team&agent=blue-team")
    messages = page.locator(".log .row .msg")
    await expect(messages).to_have_text([f"{'red' if t % 2 == 0 else 'blue'}-team t{t}" for t in range(6)])
    await expect(page.locator(".log .row .agent")).to_have_text(["red-team", "blue-team"] * 3)
    await expect(page.locator(".chips .chip")).to_have_count(2)

    await post_lines(viewer.api, "blue-team", [{"message": "blue-team live", "ts": base + 50}])
    await post_lines(viewer.api, "red-team", [{"message": "red-team live", "ts": base + 60}])
    await expect(messages.last).to_have_text("red-team live")
    await expect(messages.nth(6)).to_have_text("blue-team live")
    await viewer.screenshot("merged-view")

    # The batch by label: an agent that joins the batch later shows up with its lines.
    await page.goto(viewer.url("/?label=batch=7"))
    await expect(messages).to_have_count(8)
    await viewer.api.post("/api/agents", json={"id": "green-team", "labels": {"batch": "7"}})
    await post_lines(viewer.api, "green-team", [{"message": "green-team joins", "ts": time.time()}])
    await expect(messages.last).to_have_text("green-team joins")
    await expect(page.locator(".log .row .agent").last).to_have_text("green-team")
    for agent in ("red-team", "blue-team", "green-team"):
        await viewer.api.patch(f"/api/agents/{agent}", json={"status": "completed"})
    connection = page.locator(".log-page .connection")
    await expect(connection).to_have_text("all finished · watching for more with batch=7")
    await viewer.screenshot("label-view-watching")
    await page.wait_for_timeout(600)  # past a reconnect (300 ms here): nothing may have closed for good
    # Every agent of the batch has finished, and the view still follows the batch: a later agent shows up.
    await viewer.api.post("/api/agents", json={"id": "late-team", "labels": {"batch": "7"}})
    await post_lines(viewer.api, "late-team", [{"message": "late-team after the others", "ts": time.time()}])
    await expect(messages.last).to_have_text("late-team after the others")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
    await expect(page.locator(".chips .chip")).to_have_count(4)
    await viewer.api.patch("/api/agents/late-team", json={"status": "failed"})
    await expect(connection).to_have_attribute("data-state", "finished")
    assert len(await viewer.row_keys()) == 10
