"""The run summary and volume chart on the agent page, and the agents list's sparklines, in real headless
Chromium (browsers.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from browsers import Viewer, expect
from conftest import post_lines

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser


def run_lines(now: float) -> list[dict[str, Any]]:
    """Two minutes of a run ending now: INFO every second, a burst of errors at 30 s, usage on two lines."""
    start = now - 120
    lines: list[dict[str, Any]] = [{"message": f"tick {n}", "ts": start + n} for n in range(120)]
    lines += [{"message": f"boom {n}", "level": "error", "ts": start + 30.5} for n in range(3)]
    lines.append({"message": "careful", "level": "warning", "ts": start + 90})
    lines.append({"message": "llm call", "ts": start + 100, "fields": {"tokens": 1200, "cost": 0.25}})
    lines.append({"message": "llm call", "ts": start + 110, "fields": {"tokens": 300, "cost": 0.5}})
    return lines


async def test_header_shows_the_counts_and_a_click_filters_to_that_level(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    await post_lines(viewer.api, "summary-run", run_lines(time.time()))
    await page.goto(viewer.url("/?agent=summary-run"))
    header = page.locator(".run-summary")
    await expect(header.locator(".run-level[data-level='ERROR']")).to_have_text("ERROR 3")
    await expect(header.locator(".run-level[data-level='INFO']")).to_have_text("INFO 122")
    await expect(header.locator(".run-level[data-level='WARNING']")).to_have_text("WARNING 1")
    await expect(header.locator(".run-time")).to_contain_text("running for")
    await expect(header.locator(".run-usage")).to_contain_text("1,500 tokens")
    await expect(header.locator(".run-first-error")).to_have_text("First error: line 121")
    await page.click(".run-level[data-level='ERROR']")
    await expect(page.locator(".level-select")).to_have_value("ERROR")
    await expect(page.locator(".log .row .msg")).to_have_text(["boom 0", "boom 1", "boom 2"])
    assert "level=ERROR" in page.url
    # Lines arriving update the counts (the record is read again while the run goes on).
    await post_lines(viewer.api, "summary-run", [{"message": "again", "level": "error"}])
    await expect(header.locator(".run-level[data-level='ERROR']")).to_have_text("ERROR 4", timeout=10_000)


async def test_first_error_jumps_to_its_line(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    await post_lines(
        viewer.api, "jump-run", [f"line {n}" for n in range(400)] + [{"message": "here", "level": "error"}]
    )
    await post_lines(viewer.api, "jump-run", [f"after {n}" for n in range(400)])
    await page.goto(viewer.url("/?agent=jump-run"))
    await page.click(".run-first-error")
    target = page.locator(".log .row.target")
    await expect(target.locator(".msg")).to_have_text("here")
    await expect(target).to_be_in_viewport()
    assert page.url.endswith("#401")


async def test_chart_is_drawn_and_dragging_narrows_the_view(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    now = time.time()
    await post_lines(viewer.api, "chart-run", run_lines(now))
    await page.goto(viewer.url("/?agent=chart-run"))
    chart = page.locator(".volume-chart")
    await expect(chart).to_be_visible()
    await expect(chart.locator("rect.vlv-3")).not_to_have_count(0)
    await expect(chart.locator("rect.vlv-1")).not_to_have_count(0)
    color = await chart.locator("rect.vlv-3").first.evaluate("(rect) => getComputedStyle(rect).fill")
    info = await chart.locator("rect.vlv-1").first.evaluate("(rect) => getComputedStyle(rect).fill")
    assert color != info  # errors in their own colour
    await expect(page.locator(".log .row")).not_to_have_count(0)
    box = await page.locator(".volume-frame").bounding_box()
    assert box is not None
    # Drag across the first quarter of the run: about its first 30 s, before the errors.
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + 2, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.12, y, steps=5)
    await page.mouse.move(box["x"] + box["width"] * 0.24, y, steps=5)
    await page.mouse.up()
    await expect(page.locator(".volume-clear")).to_be_visible()
    assert "since=" in page.url and "until=" in page.url
    messages = await page.locator(".log .row .msg").all_text_contents()
    assert messages and all(message.startswith("tick ") for message in messages)
    ticks = sorted(int(message.split()[1]) for message in messages)
    assert ticks[0] <= 2 and 20 <= ticks[-1] <= 34
    await expect(page.locator(".status-bar .counts")).to_contain_text("of 126 loaded lines shown")
    # The range's button shows the whole run again.
    await page.click(".volume-clear")
    await expect(page.locator(".volume-clear")).to_be_hidden()
    assert "since=" not in page.url
    await expect(page.locator(".status-bar .counts")).to_have_text("126 lines")


async def test_a_click_on_an_error_bar_opens_its_first_error(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    await post_lines(viewer.api, "bar-run", run_lines(time.time()))
    await page.goto(viewer.url("/?agent=bar-run"))
    bar = page.locator(".volume-chart rect.vlv-3").first
    await expect(bar).to_be_visible()
    await bar.click()
    await expect(page.locator(".log .row.target .msg")).to_have_text("boom 0")
    assert page.url.endswith("#121")


async def test_agents_list_shows_a_sparkline_per_agent(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    for name in ("spark-a", "spark-b"):
        await post_lines(viewer.api, name, run_lines(time.time()))
    await page.goto(viewer.url("/"))
    for name in ("spark-a", "spark-b"):
        spark = page.locator(f".agent-row[data-id='{name}'] .spark svg.sparkline")
        await expect(spark).to_be_visible()
        await expect(spark.locator("rect.vlv-3")).not_to_have_count(0)


async def test_agents_list_of_1000_agents_fetches_sparklines_for_rows_on_screen_only(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    ids = [f"many-{n:04d}" for n in range(1000)]
    for start in range(0, len(ids), 50):
        await asyncio.gather(*(post_lines(viewer.api, agent_id, ["hello"]) for agent_id in ids[start : start + 50]))
    asked: list[str] = []
    page.on("request", lambda request: "/volume" in request.url and asked.append(request.url))
    await page.goto(viewer.url("/"))
    await expect(page.locator(".agent-row")).to_have_count(1000, timeout=20_000)
    # Rows are newest first; those created together come in any order, so the first row is whichever came last.
    await expect(page.locator(".agent-row").first.locator(".spark svg")).to_be_visible()
    await page.wait_for_timeout(1000)
    on_screen = len(asked)
    assert 0 < on_screen <= 40  # the rows a 800-pixel window shows, not 1,000
    # Scrolling to the last row fetches the rows that come into view.
    await page.locator(".agent-row").last.scroll_into_view_if_needed()
    await expect(page.locator(".agent-row").last.locator(".spark svg")).to_be_visible()
    assert len(asked) <= 2 * 40


async def test_the_chart_follows_a_running_agent(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    now = time.time()
    await post_lines(viewer.api, "live-chart", run_lines(now))
    await page.goto(viewer.url("/?agent=live-chart"))
    await expect(page.locator(".volume-chart rect.vlv-3")).not_to_have_count(0)
    last_error_bucket = """() => Math.max(...[...document.querySelectorAll('.volume-chart rect.verr')]
        .map((rect) => Number(rect.dataset.bucket)))"""
    last_bucket = """() => Math.max(...[...document.querySelectorAll('.volume-chart rect')]
        .map((rect) => Number(rect.dataset.bucket)))"""
    assert await page.evaluate(last_error_bucket) < await page.evaluate(last_bucket) / 2
    # A failure a minute later: the chart grows to it, its last bar an error, without a reload.
    await post_lines(viewer.api, "live-chart", [{"message": "late failure", "level": "critical", "ts": now + 60}])
    deadline = time.monotonic() + 10
    while await page.evaluate(last_error_bucket) != await page.evaluate(last_bucket):
        assert time.monotonic() < deadline, "the chart did not grow to the new line"
        await asyncio.sleep(0.2)
    await expect(page.locator(".volume-chart rect.vlv-4")).to_have_count(1)
