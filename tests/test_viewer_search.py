"""Links to a line and an agent's own search in the viewer, in real headless Chromium (browsers.py): a line far
back in a long run opens with the lines around it; the search follows the same rule as the server's `q`."""

from __future__ import annotations

import pytest
from browsers import Viewer, expect
from conftest import post_lines

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser


async def test_a_link_to_a_line_far_back_in_a_long_run_opens_the_lines_around_it(viewer: Viewer) -> None:
    page = viewer.page
    batch = 10_000
    for start in range(0, 11 * batch, batch):
        await post_lines(
            viewer.api,
            "long-run",
            [f"step {i}" + (" needle-far" if i == 5 else "") for i in range(start, start + batch)],
        )
    # As a search result links to it: more than the 100,000 newest lines back.
    await viewer.sign_in("/?agent=long-run#6")
    target = page.locator(".row.target")
    await expect(target).to_have_attribute("data-key", "long-run:6")
    await expect(target).to_be_in_viewport()
    await expect(target.locator(".msg")).to_have_text("step 5 needle-far")
    await expect(page.locator(".info-text")).to_have_text("Lines around #6: newer lines are not loaded or followed.")
    await expect(page.locator(".log-page .connection")).to_have_text("not following")
    await expect(page.locator(".counts")).to_have_text("1,006 of 110,000 lines loaded")
    await expect(page.locator(".log .row").first).to_have_attribute("data-key", "long-run:1")
    # A filter asks the server for the lines around the same line.
    await page.select_option(".level-select", "WARNING")
    await expect(page.locator(".counts")).to_have_text("0 of 0 loaded lines shown · 110,000 in the run")
    await page.select_option(".level-select", "DEBUG")
    await expect(page.locator(".counts")).to_have_text("1,006 of 110,000 lines loaded")

    # A link to a recent line loads the newest lines again, followed live.
    await page.evaluate("location.hash = '#109990'")
    await expect(page.locator(".row.target")).to_have_attribute("data-key", "long-run:109990")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
    await page.evaluate("location.hash = '#20'")
    await expect(page.locator(".row.target")).to_have_attribute("data-key", "long-run:20")
    await expect(page.locator(".log-page .connection")).to_have_text("not following")
    await page.click(".to-newest")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")
    assert page.url == viewer.url("/?agent=long-run")
    await expect(page.locator(".log .row").last).to_have_attribute("data-key", f"long-run:{11 * batch}")
    await post_lines(viewer.api, "long-run", ["after the jump"])
    await expect(page.locator(".log .row").last.locator(".msg")).to_have_text("after the jump")


async def test_an_agents_own_search_follows_the_same_rule_in_loaded_and_live_lines(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "rule", ["declined once", "undeclined", {"message": "payment", "reason": "Declined"}])
    # Loaded with the server's `q`: whole words, in the message or a field value.
    await viewer.sign_in("/?agent=rule&q=declined")
    await expect(page.locator(".match-count")).to_have_text("2 matches")
    await expect(page.locator(".log .row")).to_have_count(2)
    assert await viewer.row_keys() == ["rule:1", "rule:3"]
    # Live lines are kept by the same rule.
    await post_lines(viewer.api, "rule", ["declinedX", "was DECLINED"])
    await expect(page.locator(".match-count")).to_have_text("3 matches")
    await expect(page.locator(".log .row")).to_have_count(3)
    assert await viewer.row_keys() == ["rule:1", "rule:3", "rule:5"]
    await expect(page.locator(".row[data-key='rule:5'] mark.hit")).to_have_text(["DECLINED"])
    # Filtering the loaded lines in the page: a prefix, at the start of words.
    await page.fill(".search-input", "")
    await expect(page.locator(".counts")).to_have_text("5 lines")
    await page.fill(".search-input", "declin*")
    await expect(page.locator(".match-count")).to_have_text("4 matches")
    await expect(page.locator(".log .row")).to_have_count(4)
    assert await viewer.row_keys() == ["rule:1", "rule:3", "rule:4", "rule:5"]
    await expect(page.locator(".row[data-key='rule:4'] mark.hit")).to_have_text(["declin"])
