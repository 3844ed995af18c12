"""Stop and Share in the viewer, in real headless Chromium (browsers.py): Stop asks for a confirmation before it
asks the server, Share makes a link shown for copying, and the link opens the run read-only for someone who is not
signed in, with the token gone from the address bar; revoking it from the page ends that view's access."""

from __future__ import annotations

import re
from typing import Any

import pytest
from browsers import Viewer, close_viewer, expect, open_viewer
from conftest import RunningServer, post_lines

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser


async def test_stop_asks_for_a_confirmation_then_marks_the_run_stop_requested(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "runaway", ["looping"])
    await viewer.sign_in("/?agent=runaway")
    stop = page.locator(".stop-run")
    await expect(stop).to_be_visible()
    await stop.click()
    confirm = page.locator(".stop-confirm")
    await expect(confirm).to_be_visible()
    await expect(confirm).to_contain_text("Stop this run?")
    await page.click(".stop-no")
    await expect(confirm).to_be_hidden()
    assert (await viewer.api.get("/api/agents/runaway")).json()["stop_requested"] is False

    await stop.click()
    await page.click(".stop-yes")
    await expect(stop).to_have_text("Stop requested")
    await expect(stop).to_be_disabled()
    record = (await viewer.api.get("/api/agents/runaway")).json()
    assert (record["stop_requested"], record["stop_requested_by"]) == (True, viewer.user)
    await viewer.screenshot("stop-requested")

    await viewer.api.patch("/api/agents/runaway", json={"status": "failed", "reason": f"stopped by {viewer.user}"})
    await expect(page.locator(".log-page .title .badge")).to_have_text("failed")
    await expect(stop).to_be_hidden()


async def test_a_finished_run_and_another_users_run_show_no_stop(viewer: Viewer, site: RunningServer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "done", ["over"])
    await viewer.api.patch("/api/agents/done", json={"status": "completed"})
    await viewer.sign_in("/?agent=done")
    await expect(page.locator(".log .row")).to_have_count(1)
    await expect(page.locator(".stop-run")).to_be_hidden()
    await expect(page.locator(".share-run")).to_be_visible()  # a finished run can still be shown


async def test_share_makes_a_link_that_opens_the_run_read_only_without_the_token_in_the_address(
    viewer: Viewer, browser: Any, site: RunningServer
) -> None:
    page = viewer.page
    await post_lines(viewer.api, "shown", ["first line", "second line"])
    await post_lines(viewer.api, "private", ["not for guests"])
    await viewer.sign_in("/?agent=shown")
    share = page.locator(".share-run")
    await share.click()
    await expect(share).to_have_attribute("aria-expanded", "true")
    await page.select_option(".share-ttl", "7d")
    await page.click(".share-create")
    url_box = page.locator(".share-url")
    await expect(url_box).to_have_value(re.compile("#share="))
    link = await url_box.input_value()
    assert link.startswith(site.url + "/?agent=shown#share=")
    await page.click(".share-copy")
    assert await page.evaluate("navigator.clipboard.readText()") == link
    await expect(page.locator(".share-item")).to_have_count(1)
    made = (await viewer.api.get("/api/agents/shown/shares")).json()["shares"]
    assert len(made) == 1 and 7 * 86400 - 60 < made[0]["expires_at"] - made[0]["created_at"] <= 7 * 86400 + 1

    guest = await open_viewer(browser, site)  # a browser that never signed in
    try:
        await guest.page.goto(link)
        await expect(guest.page.locator(".log .row")).to_have_count(2)
        token = link.partition("#share=")[2]
        assert token not in guest.page.url and "share=" not in guest.page.url
        assert guest.page.url == site.url + "/?agent=shown"
        assert token not in await guest.page.evaluate("JSON.stringify({...sessionStorage, ...localStorage})")
        assert "sentra_token" not in await guest.page.evaluate("document.cookie")  # HttpOnly
        await expect(guest.page.locator(".who")).to_have_text("Shared link · read-only")
        await expect(guest.page.locator(".stop-run")).to_be_hidden()
        await expect(guest.page.locator(".share-run")).to_be_hidden()
        await post_lines(viewer.api, "shown", ["live for the guest too"])
        await expect(guest.page.locator(".log .row")).to_have_count(3)
        await guest.screenshot("shared-view")
        # Nothing else of the owner's is readable through it.
        other = await guest.page.evaluate("fetch('/api/agents/private').then((r) => r.status)")
        assert other == 403
        await guest.page.goto(site.url + "/")
        await expect(guest.page.locator(".agent-row")).to_have_count(1)

        # Revoked from the owner's page: the guest's next request is refused.
        await page.click(".share-revoke")
        await expect(page.locator(".share-item")).to_have_count(0)
        await expect(page.locator(".share-status")).to_contain_text("revoked")
        status = await guest.page.evaluate("fetch('/api/agents/shown').then((r) => r.status)")
        assert status == 401
        await guest.page.goto(link)
        await expect(guest.page.locator(".sign-in-error")).to_contain_text("revoked")
        assert "share=" not in guest.page.url
    finally:
        await close_viewer(guest)


async def test_the_owner_opening_their_own_link_keeps_their_session(viewer: Viewer) -> None:
    await post_lines(viewer.api, "mine", ["hello"])
    link = (await viewer.api.post("/api/agents/mine/share", json={"ttl": "1h"})).json()["url"]
    await viewer.sign_in("/")
    await viewer.page.goto(link)
    await expect(viewer.page.locator(".log .row")).to_have_count(1)
    await expect(viewer.page.locator(".who")).to_have_text(viewer.user)
    await expect(viewer.page.locator(".stop-run")).to_be_visible()
    assert "share=" not in viewer.page.url
