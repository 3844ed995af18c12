"""Steps on the agent page in real headless Chromium (browsers.py): lines grouped under a header per step (name, line
count, duration, worst level, failed), collapsed and expanded by its button, the step in progress growing live,
steps kept per agent in the merged view, OpenTelemetry spans as steps, and 100,000 lines of steps."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from browsers import Viewer, expect
from conftest import post_lines
from otlp_sdk import log_with_sdk

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser

HEADERS = ".log .step-row"


def line(message: str, step: str | None = None, level: str = "INFO", ts: float | None = None, **fields: Any) -> dict:
    """A line for POST /logs, in `step` if given."""
    body: dict[str, Any] = {"message": message, "level": level, **fields}
    if step is not None:
        body["step"] = step
    if ts is not None:
        body["ts"] = ts
    return body


async def rendered_messages(viewer: Viewer) -> list[str]:
    """The messages of the rendered line rows, top to bottom."""
    result: list[str] = await viewer.page.evaluate(
        """() => [...document.querySelectorAll('.log .row')]
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
            .map((row) => row.querySelector('.msg').textContent)"""
    )
    return result


async def test_lines_of_a_step_sit_under_a_header_with_name_count_duration_and_worst_level(viewer: Viewer) -> None:
    page = viewer.page
    start = time.time() - 60
    await post_lines(
        viewer.api,
        "browse",
        [
            line("starting the browser", ts=start),
            line("navigating", "open google.com", ts=start + 1),
            line("slow response", "open google.com", "WARNING", ts=start + 2),
            line("page loaded", "open google.com", ts=start + 3.5),
            line("typing the query", "search", ts=start + 4),
            line("step failed: TimeoutError: no results", "search", "ERROR", ts=start + 5, step_status="failed"),
            line("closing", ts=start + 6),
        ],
    )
    await viewer.sign_in("/?agent=browse")
    headers = page.locator(HEADERS)
    await expect(headers).to_have_count(2)
    await expect(headers.locator(".step-name")).to_have_text(["open google.com", "search"])
    await expect(headers.locator(".step-count")).to_have_text(["3 lines", "2 lines"])
    await expect(headers.locator(".step-duration")).to_have_text(["2.5 s", "1.0 s"])
    await expect(headers.locator(".step-level")).to_have_text(["WARNING", "ERROR"])
    await expect(headers.nth(0).locator(".step-status")).to_have_count(0)
    await expect(headers.nth(1).locator(".step-status")).to_have_text("failed")
    await expect(headers.nth(1)).to_have_class("step-row lv-3 step-failed")
    assert await rendered_messages(viewer) == [
        "starting the browser",
        "navigating",
        "slow response",
        "page loaded",
        "typing the query",
        "step failed: TimeoutError: no results",
        "closing",
    ]
    # Each header stands right above its step's first line.
    order = await page.evaluate(
        """() => [...document.querySelectorAll('.log .row, .log .step-row')]
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
            .map((row) => row.classList.contains('step-row') ? `# ${row.dataset.step}` : row.dataset.key)"""
    )
    assert order == [
        "browse:1",
        "# open google.com",
        "browse:2",
        "browse:3",
        "browse:4",
        "# search",
        "browse:5",
        "browse:6",
        "browse:7",
    ]
    await viewer.screenshot("steps")


async def test_the_header_button_collapses_and_expands_its_steps_lines(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(
        viewer.api,
        "collapse",
        [
            line("intro"),
            *(line(f"fetch {i}", "fetch") for i in range(4)),
            *(line(f"parse {i}", "parse") for i in range(2)),
        ],
    )
    await viewer.sign_in("/?agent=collapse")
    fetch = page.locator(".step-row[data-step='fetch'] button.step-toggle")
    await expect(fetch).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(".log .row")).to_have_count(7)

    await fetch.click()
    await expect(fetch).to_have_attribute("aria-expanded", "false")
    await expect(page.locator(".log .row")).to_have_count(3)
    assert await rendered_messages(viewer) == ["intro", "parse 0", "parse 1"]
    await expect(page.locator(".step-row[data-step='fetch'] .step-count")).to_have_text("4 lines")
    assert await fetch.evaluate("(button) => document.activeElement === button")

    await page.keyboard.press("Enter")  # the header is a real button: the keyboard opens it again
    await expect(fetch).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(".log .row")).to_have_count(7)
    assert await rendered_messages(viewer) == ["intro", *(f"fetch {i}" for i in range(4)), "parse 0", "parse 1"]

    # A link to a line inside a collapsed step opens the step at that line.
    await fetch.click()
    await expect(page.locator(".log .row")).to_have_count(3)
    await page.evaluate("location.hash = '#4'")
    await expect(fetch).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(".row[data-key='collapse:4']")).to_have_class("row lv-1 in-step target")


async def test_the_step_in_progress_stays_open_and_grows_live(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "live-step", [line("warming up", "crawl"), line("page 1", "crawl")])
    await viewer.sign_in("/?agent=live-step")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
    crawl = page.locator(".step-row[data-step='crawl']")
    await expect(crawl.locator(".step-count")).to_have_text("2 lines")

    for number in range(2, 6):
        await post_lines(viewer.api, "live-step", [line(f"page {number}", "crawl")])
    await expect(crawl.locator(".step-count")).to_have_text("6 lines")
    await expect(crawl.locator("button")).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(".log .row").last.locator(".msg")).to_have_text("page 5")
    await expect(page.locator(".row[data-key='live-step:6']")).to_be_in_viewport()

    await post_lines(viewer.api, "live-step", [line("trouble", "crawl", "ERROR"), line("parsing", "parse")])
    await expect(crawl.locator(".step-level")).to_have_text("ERROR")
    await expect(page.locator(HEADERS).locator(".step-name")).to_have_text(["crawl", "parse"])
    await expect(page.locator(".row[data-key='live-step:8']")).to_be_in_viewport()
    # Lines of the new step sit under its header, after the old step's lines.
    assert (await rendered_messages(viewer))[-2:] == ["trouble", "parsing"]


async def test_the_merged_view_keeps_each_agents_steps_apart(viewer: Viewer) -> None:
    page = viewer.page
    start = time.time() - 30
    # Both agents are in a step named "fetch" at the same time: their lines interleave in time.
    await post_lines(viewer.api, "alpha", [line(f"alpha fetch {i}", "fetch", ts=start + 2 * i) for i in range(3)])
    await post_lines(viewer.api, "beta", [line(f"beta fetch {i}", "fetch", ts=start + 2 * i + 1) for i in range(3)])
    await post_lines(viewer.api, "alpha", [line("alpha parse", "parse", ts=start + 10)])
    await viewer.sign_in("/?agent=alpha&agent=beta")
    headers = page.locator(HEADERS)
    await expect(headers).to_have_count(3)
    await expect(headers.locator(".agent")).to_have_text(["alpha", "beta", "alpha"])
    await expect(headers.locator(".step-name")).to_have_text(["fetch", "fetch", "parse"])
    await expect(headers.locator(".step-count")).to_have_text(["3 lines", "3 lines", "1 line"])

    await headers.nth(0).locator("button").click()
    await expect(headers.nth(0).locator("button")).to_have_attribute("aria-expanded", "false")
    await expect(page.locator(".log .row")).to_have_count(4)
    assert await rendered_messages(viewer) == ["beta fetch 0", "beta fetch 1", "beta fetch 2", "alpha parse"]


async def test_lines_logged_inside_an_opentelemetry_span_form_a_step(viewer: Viewer) -> None:
    page = viewer.page
    agent = "otel-spans"

    def run(logger: logging.Logger, tracer: Any) -> list[str]:
        spans = []
        logger.info("before any span")
        for name in ("plan", "act"):
            with tracer.start_as_current_span(name) as span:
                spans.append(format(span.get_span_context().span_id, "016x"))
                logger.info("%s: start", name)
                logger.warning("%s: careful", name)
                logger.info("%s: done", name)
        return spans

    spans = await asyncio.to_thread(
        log_with_sdk, viewer.server.url, viewer.token, {"sentra.agent.id": agent, "service.name": "planner"}, run
    )
    await viewer.sign_in(f"/?agent={agent}")
    headers = page.locator(HEADERS)
    await expect(headers).to_have_count(2)
    # Named by the span's first line, and its id shortened.
    await expect(headers.locator(".step-name")).to_have_text(["plan: start", "act: start"])
    await expect(headers.locator(".step-span")).to_have_text([f"span {span[:8]}" for span in spans])
    await expect(headers.locator(".step-count")).to_have_text(["3 lines", "3 lines"])
    await expect(headers.locator(".step-level")).to_have_text(["WARNING", "WARNING"])
    await headers.nth(1).locator("button").click()
    assert await rendered_messages(viewer) == ["before any span", "plan: start", "plan: careful", "plan: done"]


async def test_a_hundred_thousand_lines_of_steps_stay_virtual_and_collapse_quickly(viewer: Viewer) -> None:
    page = viewer.page
    batch = 10000
    for first in range(0, 100000, batch):
        # 100 steps of 1,000 lines each.
        body = "\n".join(f'{{"message": "line {n}", "step": "step {n // 1000}"}}' for n in range(first, first + batch))
        response = await viewer.api.post(
            "/api/agents/big-steps/logs", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert response.status_code == 200, response.text
    await viewer.sign_in("/?agent=big-steps")
    await expect(page.locator(".log-page .counts")).to_have_text("100,000 lines", timeout=30000)
    await expect(page.locator(".row[data-key='big-steps:100000']")).to_be_in_viewport()
    # Only the rows near the viewport are in the page.
    assert await page.locator(".log .row, .log .step-row").count() < 200

    await page.keyboard.press("g")
    first = page.locator(".step-row[data-step='step 0'] button")
    await expect(first).to_be_visible()
    await expect(first.locator(".step-count")).to_have_text("1,000 lines")
    took = await first.evaluate(
        """(button) => { const t0 = performance.now(); button.click(); return performance.now() - t0; }"""
    )
    await expect(first).to_have_attribute("aria-expanded", "false")
    assert took < 1000, f"collapsing a step of 100,000 lines took {took:.0f} ms"
    # The next step's header follows at once: step 0's thousand lines are out of the list.
    order = await page.evaluate(
        """() => [...document.querySelectorAll('.log .row, .log .step-row')]
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
            .slice(0, 3).map((row) => row.dataset.step || row.dataset.key)"""
    )
    assert order == ["step 0", "step 1", "big-steps:1001"]
