"""Attachments on the agent page in real headless Chromium (browsers.py): an image attachment is a lazy thumbnail in
its line that loads with the viewer's session and opens the full image, another file is a download link, and the
run's screenshots gather in a strip that grows live."""

from __future__ import annotations

import base64

import pytest
from browsers import Viewer, expect
from test_attachments import png, upload

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser


async def test_a_screenshot_is_a_thumbnail_that_opens_and_a_file_a_download_link(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.api.post("/api/agents/shots/logs", json={"message": "opened the browser"})
    shot = (await upload(viewer.api, "shots", png(64, 40), "image/png", "search.png", message="after search")).json()
    report = (await upload(viewer.api, "shots", b"<h1>x</h1>", "text/html", "report.html")).json()
    await viewer.sign_in("/?agent=shots")
    row = page.locator(".log .row", has_text="after search")
    thumb = row.locator(".attachment-thumb img")
    await expect(thumb).to_have_attribute("loading", "lazy")
    await expect(thumb).to_have_attribute("src", shot["url"])
    # Loaded with the viewer's own session cookie: the browser decoded the PNG.
    await page.wait_for_function(
        "(img) => img.complete && img.naturalWidth === 64", arg=await thumb.element_handle(), timeout=10000
    )
    link = page.locator(".log .row", has_text="attachment report.html").locator(".attachment-file")
    await expect(link).to_have_attribute("href", report["url"])
    await expect(link).to_have_attribute("download", "report.html")
    await expect(link).to_contain_text("report.html")

    await thumb.click()
    full = page.locator("dialog.image-viewer[open] .image-viewer-image")
    await expect(full).to_have_attribute("src", shot["url"])
    await page.wait_for_function("(img) => img.naturalHeight === 40", arg=await full.element_handle(), timeout=10000)
    await page.keyboard.press("Escape")
    await expect(page.locator("dialog.image-viewer[open]")).to_have_count(0)
    await viewer.screenshot("attachments")


async def test_the_runs_screenshots_strip_grows_live(viewer: Viewer) -> None:
    page = viewer.page
    await upload(viewer.api, "strip", png(), "image/png", "one.png")
    await viewer.sign_in("/?agent=strip")
    strip = page.locator(".screenshots")
    await expect(strip).to_be_visible()
    await expect(strip.locator(".screenshot img")).to_have_count(1)
    await expect(strip.locator(".screenshots-count")).to_have_text("1")
    # A screenshot sent the browser-use way, as a data URL in a field, arrives live.
    encoded = "data:image/png;base64," + base64.b64encode(png(20, 20, (0, 120, 0))).decode()
    answer = await viewer.api.post("/api/agents/strip/logs", json={"message": "step 2", "page": encoded})
    assert answer.status_code == 200
    await expect(strip.locator(".screenshot img")).to_have_count(2)
    await expect(page.locator(".log .row", has_text="step 2").locator(".attachment-thumb img")).to_have_count(1)
    await strip.locator(".screenshot").nth(1).click()
    await expect(page.locator("dialog.image-viewer[open] .image-viewer-name")).to_have_text("page")


async def test_an_agent_without_screenshots_shows_no_strip(viewer: Viewer) -> None:
    await viewer.api.post("/api/agents/plain/logs", json={"message": "nothing to see"})
    await viewer.sign_in("/?agent=plain")
    await expect(viewer.page.locator(".log .row")).to_have_count(1)
    await expect(viewer.page.locator(".screenshots")).to_be_hidden()
