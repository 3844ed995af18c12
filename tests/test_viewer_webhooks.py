"""The viewer's webhooks page (/?settings=webhooks) in real headless Chromium (browsers.py), against a real receiver
on loopback (allowed through webhooks.allowed_targets): adding a webhook shows its secret once, a refused target
shows the API's reason, "Send test" reaches the receiver and its delivery is listed, failed attempts and a failing
webhook show as such, removal asks first, and another user's webhooks never show."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import standardwebhooks
from browsers import VIEWER_SETTINGS, Viewer, expect
from conftest import RunningServer, running_server
from webhook_receiver import Receiver

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser, real deliveries

# The viewer's settings; loopback receivers are allowed; a webhook fails "for a day" after a second here.
HOOK_SETTINGS: dict[str, Any] = {
    **VIEWER_SETTINGS,
    "webhooks.allowed_targets": ["127.0.0.1"],
    "webhooks.failing_after": "1s",
}
SETTINGS_PAGE = "/?settings=webhooks"


@pytest_asyncio.fixture(name="site", scope="module", loop_scope="module")
async def site_fixture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """The module's server (replacing browsers.py's): webhooks may reach 127.0.0.1 and fail after 1 s."""
    db = tmp_path_factory.mktemp("viewer-webhooks") / "sentra.db"
    async with running_server(db, **HOOK_SETTINGS) as server:
        yield server


async def register(viewer: Viewer, url: str, events: list[str] | None = None) -> dict[str, Any]:
    """Register a webhook for the viewer's user through the API; its answer."""
    response = await viewer.api.post("/api/webhooks", json={"url": url, "events": events or ["agent.failed"]})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def listed(viewer: Viewer) -> list[dict[str, Any]]:
    """The viewer's user's webhooks as GET /api/webhooks lists them."""
    response = await viewer.api.get("/api/webhooks")
    assert response.status_code == 200, response.text
    return list(response.json()["webhooks"])


def hook_item(viewer: Viewer, url: str) -> Any:
    """The list item of the webhook sending to `url`."""
    return viewer.page.locator(".hook").filter(has=viewer.page.locator(".hook-url", has_text=url))


async def delivery_cells(item: Any) -> list[list[str]]:
    """The deliveries table of a webhook's item: the cells of each row, newest first."""
    rows: list[list[str]] = await item.locator(".deliveries tbody tr").evaluate_all(
        "(rows) => rows.map((row) => [...row.cells].map((cell) => cell.textContent))"
    )
    return rows


async def refresh_until(item: Any, rows: int, timeout: float = 15.0) -> None:
    """Press the deliveries' Refresh until the table has `rows` rows (AssertionError after `timeout` s)."""
    for _ in range(int(timeout / 0.5)):
        await item.get_by_role("button", name="Refresh").click()
        await asyncio.sleep(0.5)
        if await item.locator(".deliveries tbody tr").count() >= rows:
            return
    raise AssertionError(f"the deliveries table did not reach {rows} rows within {timeout} s")


async def test_a_webhook_added_in_the_form_shows_its_secret_once_and_is_listed_without_it(
    viewer: Viewer,
) -> None:
    page = viewer.page
    async with Receiver() as receiver:
        await viewer.sign_in()
        await page.get_by_role("link", name="Webhooks", exact=True).click()
        await expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        assert page.url == viewer.url(SETTINGS_PAGE)
        await expect(page.locator(".hooks-status")).to_have_text("No webhooks yet: add one below.")

        await page.get_by_label("URL", exact=True).fill(receiver.url)
        await page.get_by_label("agent.completed").check()
        await expect(page.get_by_label("Minimum level")).to_be_disabled()  # lines.matched is not ticked
        await page.get_by_label("lines.matched").check()
        await page.get_by_label("Minimum level").select_option("ERROR")
        await page.get_by_label("Containing", exact=True).fill("timeout")
        await page.get_by_label("Only agents labelled").fill("team=search")
        await page.get_by_role("button", name="Add webhook").click()

        box = page.get_by_role("region", name=re.compile("secret"))
        await expect(box).to_be_visible()
        await expect(box).to_contain_text("you will not see it again")
        secret = await box.locator(".secret").text_content()
        assert secret is not None and secret.startswith("whsec_")
        await box.get_by_role("button", name="Copy secret").click()
        assert await page.evaluate("navigator.clipboard.readText()") == secret
        await viewer.screenshot("webhooks-secret")

        item = hook_item(viewer, receiver.url)
        await expect(item.locator(".hook-status")).to_have_text("ok")
        await expect(item.locator(".hook-events-text")).to_have_text("agent.failed, agent.completed, lines.matched")
        await expect(item.locator(".hook-label-text")).to_have_text("team=search")
        await expect(item.locator(".hook-level-text")).to_have_text("ERROR")
        await expect(item.locator(".hook-contains-text")).to_have_text("timeout")
        await expect(item.locator(".hook-last")).to_have_text("never")
        await expect(page.get_by_label("URL", exact=True)).to_have_value("")  # the form is ready for the next one

        (hook,) = await listed(viewer)
        assert (hook["url"], hook["events"], hook["label"]) == (
            receiver.url,
            ["agent.failed", "agent.completed", "lines.matched"],
            "team=search",
        )
        assert "secret" not in hook

        # Reloaded, the page lists the webhook but never shows its secret again.
        await page.reload()
        await expect(hook_item(viewer, receiver.url)).to_have_count(1)
        await expect(page.locator(".secret-box")).to_be_hidden()
        assert secret not in await page.content()


async def test_a_target_inside_the_network_is_refused_with_the_apis_reason(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in(SETTINGS_PAGE)
    await page.get_by_label("URL", exact=True).fill("http://169.254.169.254/latest/meta-data/")
    await page.get_by_role("button", name="Add webhook").click()
    error = page.get_by_role("alert")
    await expect(error).to_contain_text("169.254.169.254")
    await expect(error).to_contain_text("webhooks.allowed_targets")
    await expect(page.get_by_label("URL", exact=True)).to_have_attribute("aria-invalid", "true")
    await viewer.screenshot("webhooks-refused")

    # Another refusal replaces it, in the API's words too.
    await page.get_by_label("URL", exact=True).fill("https://hooks.example.com/sentra")
    await page.get_by_label("agent.failed").uncheck()
    await page.get_by_role("button", name="Add webhook").click()
    await expect(error).to_contain_text("'events' must be a non-empty list")
    await expect(page.get_by_label("URL", exact=True)).not_to_have_attribute("aria-invalid", "true")
    await expect(page.locator(".hook")).to_have_count(0)
    assert await listed(viewer) == []


async def test_send_test_reaches_the_receiver_and_the_deliveries_show_it_delivered(viewer: Viewer) -> None:
    page = viewer.page
    async with Receiver() as receiver:
        await viewer.sign_in(SETTINGS_PAGE)
        await page.get_by_label("URL", exact=True).fill(receiver.url)
        await page.get_by_role("button", name="Add webhook").click()
        await expect(page.locator(".secret")).to_have_text(re.compile("^whsec_"))
        secret = await page.locator(".secret").text_content()
        await page.get_by_role("button", name="Done").click()
        await expect(page.locator(".secret-box")).to_be_hidden()

        item = hook_item(viewer, receiver.url)
        await item.get_by_role("button", name="Send test").click()
        (request,) = await receiver.wait_for(1)
        event = standardwebhooks.Webhook(secret).verify(request.body, request.headers)  # the secret shown works
        assert event["type"] == "webhook.test"
        await expect(item.locator(".hook-feedback")).to_have_text("Test delivered (HTTP 204).")
        await expect(item.get_by_role("button", name="Deliveries")).to_have_attribute("aria-expanded", "true")
        table = item.get_by_role("table")
        await expect(table.get_by_role("columnheader")).to_have_text(
            ["Time", "Event", "Result", "HTTP status", "Attempt", "Error"]
        )
        ((when, kind, result, status, attempt, problem),) = await delivery_cells(item)
        assert (kind, result, status, attempt, problem) == ("webhook.test", "delivered", "204", "1", "")
        assert re.search(r"\d\d:\d\d:\d\d", when)
        assert await item.locator(".deliveries tbody tr").get_attribute("data-id") == request.headers["webhook-id"]
        await expect(item.locator(".hook-last")).not_to_have_text("never")
        await viewer.screenshot("webhooks-delivered")

        # The table can be closed and opened again (read afresh), with the keyboard too.
        toggle = item.get_by_role("button", name="Deliveries")
        await toggle.focus()
        await page.keyboard.press("Enter")
        await expect(table).to_be_hidden()
        await page.keyboard.press("Enter")
        await expect(table.locator("tbody tr")).to_have_count(1)


async def test_a_receiver_answering_500_shows_the_failed_attempts_and_then_the_webhook_as_failing(
    viewer: Viewer,
) -> None:
    page = viewer.page
    async with Receiver([500] * 20) as receiver:
        await register(viewer, receiver.url)
        await viewer.sign_in(SETTINGS_PAGE)
        item = hook_item(viewer, receiver.url)
        await expect(item.locator(".hook-status")).to_have_text("ok")
        await item.get_by_role("button", name="Send test").click()
        await expect(item.locator(".hook-feedback")).to_have_text("Test failed, will retry (HTTP 500).")
        ((_, kind, result, status, attempt, _),) = await delivery_cells(item)
        assert (kind, result, status, attempt) == ("webhook.test", "failed, will retry", "500", "1")

        # The retry comes a second later, with the same webhook-id; Refresh shows it, and by then (failing_after
        # is 1 s here) the webhook shows as failing.
        await refresh_until(item, 2)
        rows = await delivery_cells(item)
        assert [(row[1], row[2], row[3], row[4]) for row in rows[:2]] == [
            ("webhook.test", "failed, will retry", "500", "2"),
            ("webhook.test", "failed, will retry", "500", "1"),
        ]
        first, second = receiver.received[:2]
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        await expect(item.locator(".hook-status")).to_have_text("failing")
        await expect(item.locator(".hook-failing")).to_contain_text("Failing since")
        await expect(page.locator(".summary")).to_have_text("1 webhook · 1 failing")
        await viewer.screenshot("webhooks-failing")

        await page.reload()
        await expect(hook_item(viewer, receiver.url).locator(".hook-status")).to_have_text("failing")
        (hook,) = await listed(viewer)
        assert hook["status"] == "failing"


async def test_remove_asks_first_then_the_webhook_is_gone_from_the_page_and_the_api(viewer: Viewer) -> None:
    page = viewer.page
    async with Receiver(path="/one") as one, Receiver(path="/two") as two:
        await register(viewer, one.url)
        kept = await register(viewer, two.url)
        await viewer.sign_in(SETTINGS_PAGE)
        item = hook_item(viewer, one.url)
        await expect(page.locator(".hook")).to_have_count(2)

        # With the keyboard: Remove asks, Escape keeps the webhook.
        await item.get_by_role("button", name="Remove").focus()
        await page.keyboard.press("Enter")
        confirm = item.get_by_role("group", name="Confirm removal")
        await expect(confirm).to_be_visible()
        await expect(item.get_by_role("button", name="Yes, remove")).to_be_focused()
        await page.keyboard.press("Escape")
        await expect(confirm).to_be_hidden()
        await expect(item.get_by_role("button", name="Remove")).to_be_focused()
        await item.get_by_role("button", name="Remove").click()
        await item.get_by_role("button", name="Cancel").click()
        await expect(page.locator(".hook")).to_have_count(2)
        assert len(await listed(viewer)) == 2

        await item.get_by_role("button", name="Remove").click()
        await item.get_by_role("button", name="Yes, remove").click()
        await expect(item).to_have_count(0)
        await expect(page.locator(".hooks-status")).to_have_text(f"Removed {one.url}.")
        assert [hook["id"] for hook in await listed(viewer)] == [kept["id"]]
        await page.reload()
        await expect(page.locator(".hook")).to_have_count(1)
        await expect(hook_item(viewer, two.url)).to_have_count(1)


async def test_another_users_webhooks_never_show(viewer: Viewer, site: RunningServer) -> None:
    page = viewer.page
    async with Receiver(path="/mine") as mine, Receiver(path="/theirs") as theirs:
        async with site.client(f"{viewer.user}-other") as other:
            response = await other.post("/api/webhooks", json={"url": theirs.url, "events": ["agent.failed"]})
            assert response.status_code == 201, response.text
        await register(viewer, mine.url)
        await viewer.sign_in(SETTINGS_PAGE)
        await expect(hook_item(viewer, mine.url)).to_have_count(1)
        await expect(page.locator(".hook")).to_have_count(1)
        await expect(page.locator(".summary")).to_have_text("1 webhook")
        assert theirs.url not in await page.content()
