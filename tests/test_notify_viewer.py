"""Desktop notifications of failed runs in real headless Chromium (browsers.py): the permission granted through the
browser context, notifications captured by an init script that wraps window.Notification."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from browsers import WIDE, Viewer, close_viewer, expect, watch
from conftest import RunningServer, create_agent, post_lines

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser

# Records every notification the page makes and every permission request, and still calls the browser's own.
CAPTURE = """
window.__notifications = [];
window.__asks = 0;
const Real = window.Notification;
function Captured(title, options = {}) {
  window.__notifications.push({ title, body: options.body, tag: options.tag });
  return new Real(title, options);
}
Object.defineProperty(Captured, "permission", { get: () => Real.permission });
Captured.requestPermission = (...args) => {
  window.__asks += 1;
  return Real.requestPermission(...args);
};
window.Notification = Captured;
"""


async def open_tab(browser: Any, site: RunningServer, permissions: list[str]) -> Viewer:
    """A fresh context with `permissions` granted, capturing notifications."""
    context = await browser.new_context(viewport=WIDE, permissions=permissions)
    await context.add_init_script(CAPTURE)
    page = await context.new_page()
    user = f"u{uuid.uuid4().hex[:10]}"
    viewer = Viewer(site, context, page, user, site.client(user))
    watch(page, viewer.problems)
    return viewer


@pytest_asyncio.fixture(name="allowed", loop_scope="module")
async def allowed_fixture(browser: Any, site: RunningServer) -> AsyncIterator[Viewer]:
    """A tab whose browser context allows notifications."""
    tab = await open_tab(browser, site, ["notifications"])
    yield tab
    await close_viewer(tab)


async def notifications(viewer: Viewer) -> list[dict[str, Any]]:
    """The notifications the page has made so far."""
    made: list[dict[str, Any]] = await viewer.page.evaluate("window.__notifications")
    return made


async def fail(viewer: Viewer, agent_id: str, reason: str) -> None:
    """Mark the agent failed through the API, as its run would."""
    response = await viewer.api.patch(f"/api/agents/{agent_id}", json={"status": "failed", "reason": reason})
    assert response.status_code == 200, response.text


async def test_a_watched_agent_that_fails_shows_a_notification_once_the_toggle_is_on(allowed: Viewer) -> None:
    page = allowed.page
    await post_lines(allowed.api, "shopper", ["opening the shop"])
    await post_lines(allowed.api, "quiet", ["opening the shop"])
    await allowed.sign_in("/?agent=shopper")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
    toggle = page.locator("button.notify-toggle")
    # Nothing is asked or shown on load: the person turns it on.
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    assert await page.evaluate("window.__asks") == 0

    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await fail(allowed, "shopper", "TimeoutError: no search box")
    await expect(page.locator(".log-page .title .badge")).to_have_text("failed")
    await page.wait_for_function("window.__notifications.length === 1", timeout=5000)
    assert await notifications(allowed) == [
        {"title": "Run failed: shopper", "body": "TimeoutError: no search box", "tag": "sentra-failed-shopper"}
    ]

    # The choice is kept: on the next page the toggle is on; turned off, a failure shows nothing.
    await page.goto(allowed.url("/?agent=quiet"))
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await fail(allowed, "quiet", "boom")
    await expect(page.locator(".log-page .title .badge")).to_have_text("failed")
    await page.wait_for_timeout(300)
    assert await notifications(allowed) == []


async def test_the_agents_list_notifies_of_a_run_that_fails_and_not_of_others(allowed: Viewer) -> None:
    page = allowed.page
    await create_agent(allowed.api, id="failed-before")
    await fail(allowed, "failed-before", "long ago")
    await create_agent(allowed.api, id="finisher")
    await create_agent(allowed.api, id="crasher", name="nightly crawl")
    await allowed.sign_in("/")
    await expect(page.locator(".agent-row")).to_have_count(3)
    await page.click("button.notify-toggle")
    await expect(page.locator("button.notify-toggle")).to_have_attribute("aria-pressed", "true")

    response = await allowed.api.patch("/api/agents/finisher", json={"status": "completed"})
    assert response.status_code == 200
    await fail(allowed, "crasher", "exit code 3")
    await expect(page.locator(".agent-row[data-id='crasher'] .badge")).to_have_text("failed")
    await page.wait_for_function("window.__notifications.length >= 1", timeout=5000)
    await page.wait_for_timeout(300)
    # One for the run that failed while watched; none for the completed one or the one failed before.
    assert await notifications(allowed) == [
        {"title": "Run failed: nightly crawl", "body": "exit code 3", "tag": "sentra-failed-crasher"}
    ]


async def test_a_browser_that_blocks_notifications_shows_the_toggle_disabled(browser: Any, site: RunningServer) -> None:
    tab = await open_tab(browser, site, [])
    try:
        page = tab.page
        await post_lines(tab.api, "blocked", ["hello"])
        await tab.sign_in("/?agent=blocked")
        await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
        assert await page.evaluate("Notification.permission") == "denied"  # headless Chromium, nothing granted
        toggle = page.locator("button.notify-toggle")
        await expect(toggle).to_be_disabled()
        await expect(toggle).to_have_attribute("aria-pressed", "false")
        await expect(toggle).to_have_attribute("title", re.compile("blocked"))
        assert await page.evaluate("window.__asks") == 0
        await fail(tab, "blocked", "boom")
        await expect(page.locator(".log-page .title .badge")).to_have_text("failed")
        await page.wait_for_timeout(300)
        assert await notifications(tab) == []
    finally:
        await close_viewer(tab)
