"""Many viewer tabs in one browser profile, in headless Chromium: they share the live data, so every tab is live.

Over HTTP/1.1 a browser opens at most six connections per host; with a stream per tab the seventh tab stayed
blank. The tabs of one browser now share one lines stream and one agents feed (a SharedWorker, static/hub.js).
Also here: watching an agent before it exists, and downloads that follow the view's filters.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from browsers import VIEWER_SETTINGS, Viewer, close_viewer, expect, keys_of, open_viewer, watch
from conftest import RunningServer, post_lines, running_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser

# "Within seconds": how long a tab may take to show a line after it was posted.
LIVE_MS = 5_000
# Every row of these runs fits on screen, so the DOM holds them all and they can be read back.
TALL = {"width": 1000, "height": 4000}


async def new_tab(viewer: Viewer, path: str) -> Any:
    """Another tab in the viewer's browser context (same profile, same cookie), watched for errors."""
    page = await viewer.context.new_page()
    watch(page, viewer.problems)
    await page.goto(viewer.url(path))
    return page


async def open_streams(server: RunningServer) -> int:
    """Sentra's count of open SSE streams (its /metrics, readable from loopback)."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics")).text
    found = re.search(r"^sentra_open_streams (\d+)", text, re.MULTILINE)
    assert found is not None, text[:500]
    return int(found.group(1))


async def test_eight_agent_tabs_and_the_agents_list_in_one_browser_all_show_new_lines(
    browser: Any, tmp_path: Path
) -> None:
    # A server of its own, so its count of open streams is this browser's alone.
    async with running_server(tmp_path / "tabs.db", **VIEWER_SETTINGS) as server:
        viewer = await open_viewer(browser, server)
        try:
            agents = [f"run-{i}" for i in range(8)]
            for agent in agents:
                await post_lines(viewer.api, agent, [f"{agent} starts"])
            await viewer.sign_in()
            tabs = [await new_tab(viewer, f"/?agent={agent}") for agent in agents]
            for agent, tab in zip(agents, tabs, strict=True):
                await expect(tab.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
                await expect(tab.locator(f".row[data-key='{agent}:1'] .msg")).to_have_text(f"{agent} starts")
            await expect(viewer.page.locator(".agents-page .connection")).to_have_attribute("data-state", "connected")

            posted = time.monotonic()
            for agent in agents:
                await post_lines(viewer.api, agent, [f"{agent} goes on"])
            for agent, tab in zip(agents, tabs, strict=True):
                row = tab.locator(f".row[data-key='{agent}:2'] .msg")
                await expect(row).to_have_text(f"{agent} goes on", timeout=LIVE_MS)
            for agent in agents:
                count = viewer.page.locator(f".agent-row[data-id='{agent}'] .line-count")
                await expect(count).to_have_text("2 lines", timeout=LIVE_MS)
            assert time.monotonic() - posted < LIVE_MS / 1000 * 2
            await viewer.screenshot("ninth-tab-agents-page")

            # Nine tabs, two connections: one lines stream for every agent tab, one agents feed.
            deadline = time.monotonic() + 5
            while (streams := await open_streams(server)) != 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert streams == 2

            # A tenth tab still loads at once, and a new agent shows on the agents list.
            extra = await new_tab(viewer, "/?agent=run-0")
            await expect(extra.locator(".log .row .msg")).to_have_text(["run-0 starts", "run-0 goes on"])
            await post_lines(viewer.api, "run-9", ["the ninth agent"])
            await expect(viewer.page.locator(".agent-row")).to_have_count(9, timeout=LIVE_MS)
            await expect(extra.locator(".counts")).to_have_text("2 lines")
        finally:
            await close_viewer(viewer)


async def test_opening_and_closing_tabs_while_lines_flow_never_loses_or_repeats_a_line(
    browser: Any, site: RunningServer
) -> None:
    viewer = await open_viewer(browser, site, viewport=TALL)
    try:
        last = 50
        for agent in ("flow-a", "flow-b"):
            await post_lines(viewer.api, agent, [f"{agent} {seq}" for seq in range(1, 6)])
        await viewer.sign_in("/?agent=flow-a")
        tabs = {
            "a1": viewer.page,
            "a2": await new_tab(viewer, "/?agent=flow-a"),
            "b1": await new_tab(viewer, "/?agent=flow-b"),
            "ab": await new_tab(viewer, "/?agent=flow-a&agent=flow-b"),
        }
        for tab in tabs.values():
            await expect(tab.locator(".log-page .connection")).to_have_attribute("data-state", "connected")

        async def write() -> None:
            for seq in range(6, last + 1):
                for agent in ("flow-a", "flow-b"):
                    await post_lines(viewer.api, agent, [f"{agent} {seq}"])
                await asyncio.sleep(0.04)

        writer = asyncio.create_task(write())
        # While lines flow: tabs close, others open on the same agents and on both at once.
        await asyncio.sleep(0.3)
        await tabs.pop("a2").close()
        tabs["a3"] = await new_tab(viewer, "/?agent=flow-a")
        await asyncio.sleep(0.3)
        tabs["b2"] = await new_tab(viewer, "/?agent=flow-b")
        await tabs.pop("b1").close()
        await asyncio.sleep(0.3)
        tabs["ab2"] = await new_tab(viewer, "/?agent=flow-b&agent=flow-a")
        await tabs.pop("a1").close()
        await writer

        expected = {agent: [f"{agent}:{seq}" for seq in range(1, last + 1)] for agent in ("flow-a", "flow-b")}
        for name, tab in tabs.items():
            shows = ["flow-a", "flow-b"] if name.startswith("ab") else [f"flow-{name[0]}"]
            for agent in shows:
                await expect(tab.locator(f".row[data-key='{agent}:{last}']")).to_be_attached(timeout=LIVE_MS)
            keys = await keys_of(tab)
            assert len(keys) == len(set(keys)), f"{name} repeats a line"
            for agent in shows:
                assert [key for key in keys if key.startswith(f"{agent}:")] == expected[agent], name
            assert len(keys) == last * len(shows), name
    finally:
        await close_viewer(viewer)


async def test_viewer_opened_before_the_agent_exists_waits_and_shows_its_lines(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in("/?agent=starts-later")
    connection = page.locator(".log-page .connection")
    await expect(connection).to_have_text("waiting for agent starts-later…")
    await expect(connection).to_have_attribute("data-state", "waiting")
    await viewer.screenshot("agent-page-waiting")
    await page.wait_for_timeout(600)  # well past a reconnect (300 ms here): it keeps waiting, with no error
    await expect(connection).to_have_attribute("data-state", "waiting")

    created = await viewer.api.post("/api/agents", json={"id": "starts-later", "name": "late starter"})
    assert created.status_code == 201
    await post_lines(viewer.api, "starts-later", ["first words", "second words"])
    await expect(page.locator(".log .row .msg")).to_have_text(["first words", "second words"], timeout=LIVE_MS)
    await expect(connection).to_have_attribute("data-state", "connected")
    await expect(page.locator(".log-page .title .name")).to_have_text("late starter")
    await expect(page.locator(".counts")).to_have_text("2 lines")
    await viewer.api.patch("/api/agents/starts-later", json={"status": "completed"})
    await expect(connection).to_have_text("finished: completed")
    assert await keys_of(page) == ["starts-later:1", "starts-later:2"]


async def test_waiting_for_an_agent_another_user_creates_shows_nothing_of_it(
    viewer: Viewer, site: RunningServer
) -> None:
    page = viewer.page
    await viewer.sign_in("/?agent=claimed")
    connection = page.locator(".log-page .connection")
    await expect(connection).to_have_attribute("data-state", "waiting")
    async with site.client("someone-else") as other:
        await post_lines(other, "claimed", ["not yours to read"])
    await expect(connection).to_have_text("error: agent 'claimed' belongs to another user", timeout=LIVE_MS)
    await expect(page.locator(".log .row")).to_have_count(0)
    assert "not yours" not in await page.content()


async def test_download_follows_the_level_search_and_source_filters(viewer: Viewer) -> None:
    page = viewer.page
    lines = [
        {"message": f"{'Needle' if i % 3 == 0 else 'hay'} {i}", "level": ["info", "warning", "error"][i % 3 - 1],
         "source": "stderr" if i % 2 else "stdout"}
        for i in range(1, 31)
    ]  # fmt: skip
    await post_lines(viewer.api, "dl-filters", lines)
    await viewer.sign_in("/?agent=dl-filters&level=WARNING&q=needle")
    await expect(page.locator(".match-count")).to_have_text("10 matches")
    await page.click(".menu summary")
    await expect(page.locator(".download-note")).to_have_text("Only lines WARNING and above, containing “needle”")
    links = page.locator(".downloads a")
    await expect(links).to_have_text(["Text (.log)", "NDJSON"])
    text_href = await links.nth(0).get_attribute("href")
    text = await page.evaluate("(href) => fetch(href).then((r) => r.text())", text_href)
    # The server's rule: at least WARNING, and "needle" in the message, whatever its case.
    wanted = [line for line in lines if line["level"] != "info" and "needle" in str(line["message"]).lower()]
    assert text == "".join(f"{line['message']}\n" for line in wanted)
    assert len(wanted) == 10

    # The server has no source filter: with one the browser filters the server's NDJSON itself.
    await page.select_option(".source-select", "stderr")
    await expect(page.locator(".match-count")).to_have_text("5 matches")
    await page.click(".menu summary")
    await page.click(".menu summary")
    await expect(page.locator(".download-note")).to_contain_text("from stderr")
    from_stderr = [line for line in wanted if line["source"] == "stderr"]
    async with page.expect_download() as text_download:
        await page.click(".downloads button:has-text('Text (.log)')")
    saved = Path(await (await text_download.value).path()).read_text()
    assert saved == "".join(f"{line['message']}\n" for line in from_stderr)
    async with page.expect_download() as ndjson_download:
        await page.click(".downloads button:has-text('NDJSON')")
    download = await ndjson_download.value
    assert download.suggested_filename == "dl-filters.ndjson"
    records = [json.loads(row) for row in Path(await download.path()).read_text().splitlines()]
    assert [record["message"] for record in records] == [line["message"] for line in from_stderr]
    assert {record["source"] for record in records} == {"stderr"}


async def test_merged_download_holds_the_shown_lines(viewer: Viewer) -> None:
    page = viewer.page
    for agent in ("dl-x", "dl-y"):
        await post_lines(
            viewer.api, agent, [{"message": f"{agent} {level}", "level": level} for level in ("info", "error")]
        )
    await viewer.sign_in("/?agent=dl-x&agent=dl-y&level=ERROR")
    await expect(page.locator(".log .row")).to_have_count(2)
    await page.click(".menu summary")
    async with page.expect_download() as download:
        await page.click(".downloads button:has-text('Shown lines (NDJSON)')")
    records = [json.loads(row) for row in Path(await (await download.value).path()).read_text().splitlines()]
    assert sorted(record["message"] for record in records) == ["dl-x error", "dl-y error"]


async def test_a_browser_without_shared_workers_still_shows_every_tab_live(browser: Any, site: RunningServer) -> None:
    viewer = await open_viewer(browser, site)
    try:
        # As in a browser with no SharedWorker: each tab runs the hub itself, over a stream of its own.
        await viewer.context.add_init_script("delete window.SharedWorker")
        await post_lines(viewer.api, "alone", ["one"])
        await viewer.sign_in("/?agent=alone")
        other = await new_tab(viewer, "/?agent=alone")
        for tab in (viewer.page, other):
            await expect(tab.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
        assert await other.evaluate("typeof SharedWorker") == "undefined"
        await post_lines(viewer.api, "alone", ["two"])
        for tab in (viewer.page, other):
            await expect(tab.locator(".log .row .msg")).to_have_text(["one", "two"], timeout=LIVE_MS)
    finally:
        await close_viewer(viewer)
