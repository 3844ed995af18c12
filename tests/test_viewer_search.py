"""The viewer's search over every run, in real headless Chromium (browsers.py): the search box on the agents page,
results newest first with their matches highlighted, more as the list scrolls, the search kept in the address
(reload, back and forward), a result opening its agent at its line (also a line far back in a long run), and one
agent's own search following the same rule as the server's `q`."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from browsers import Viewer, expect
from conftest import RunningServer, create_agent, post_lines

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser

# The first page of results the viewer asks for (the API's default `limit`).
PAGE = 100


async def search_for(viewer: Viewer, words: str) -> None:
    """Type `words` into the search box of the agents page and submit them with Enter."""
    box = viewer.page.get_by_label("Search every run")
    await box.fill(words)
    await box.press("Enter")


def result_keys(page: Any) -> Any:
    """The agent:seq of every result shown, top to bottom."""
    return page.eval_on_selector_all(".result", "(items) => items.map((item) => item.dataset.key)")


async def test_search_box_finds_every_runs_lines_newest_first_highlighted_and_kept_in_the_address(
    viewer: Viewer, site: RunningServer
) -> None:
    page = viewer.page
    now = time.time()
    await create_agent(viewer.api, id="pay-1", name="checkout")
    await post_lines(viewer.api, "pay-1", [
        {"message": "Card DECLINED for order 17", "level": "error", "ts": now - 50},
        {"message": "order 18 paid", "ts": now - 40},
    ])  # fmt: skip
    await post_lines(viewer.api, "pay-2", [
        {"message": "retrying: card was declined", "level": "warning", "ts": now - 30},
        {"message": "payment refused", "reason": "card declined by the issuer", "ts": now - 20},
    ])  # fmt: skip
    await post_lines(viewer.api, "crawler-7", [{"message": "declined to crawl, no card", "ts": now - 10}])
    # Another user's lines with the same words never show.
    async with site.client(f"{viewer.user}-other") as other:
        await post_lines(other, "not-mine", [{"message": "card declined elsewhere", "ts": now - 5}])

    await viewer.sign_in()
    await expect(page.locator(".agent-row")).to_have_count(3)
    await search_for(viewer, "card declined")
    assert re.search(r"/\?search=card(\+|%20)declined$", page.url)
    results = page.locator(".result")
    await expect(results).to_have_count(4)
    assert await result_keys(page) == ["crawler-7:1", "pay-2:2", "pay-2:1", "pay-1:1"]
    await expect(page.locator(".search-status")).to_have_text("4 matching lines, newest first")
    await expect(page.locator(".agent-list")).to_be_hidden()

    first = page.locator(".result[data-key='pay-1:1']")
    await expect(first.locator(".result-agent")).to_have_text("checkout")  # the agent's name, its id on hover
    await expect(first.locator(".result-agent")).to_have_attribute("title", "pay-1")
    await expect(first.locator(".level")).to_have_text("ERROR")
    await expect(first.locator(".result-time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    await expect(first.locator(".result-msg")).to_have_text("Card DECLINED for order 17")
    await expect(first.locator(".result-msg mark.hit")).to_have_text(["Card", "DECLINED"])
    await expect(page.locator(".result[data-key='crawler-7:1'] mark.hit")).to_have_text(["declined", "card"])

    # Matched in a field's value: the field is shown, with its match highlighted.
    in_field = page.locator(".result[data-key='pay-2:2']")
    await expect(in_field.locator(".result-msg")).to_have_text("payment refused")
    await expect(in_field.locator(".result-msg mark")).to_have_count(0)
    await expect(in_field.locator(".result-field")).to_have_text("reason: card declined by the issuer")
    await expect(in_field.locator(".result-field mark.hit")).to_have_text(["card", "declined"])
    await viewer.screenshot("search-results")

    # A shared or reloaded address runs the search again.
    await page.reload()
    await expect(page.get_by_label("Search every run")).to_have_value("card declined")
    await expect(results).to_have_count(4)

    # Back returns to the agents, forward to the results; a second search is one more step.
    await page.go_back()
    await expect(page.locator(".agent-row")).to_have_count(3)
    await expect(page.locator(".search-results")).to_be_hidden()
    assert page.url == viewer.url("/")
    await page.go_forward()
    await expect(results).to_have_count(4)
    await search_for(viewer, '"order 18"')
    await expect(page.locator(".result")).to_have_count(1)
    await expect(page.locator(".result mark.hit")).to_have_text(["order 18"])  # the phrase, as one match
    await page.go_back()
    await expect(page.get_by_label("Search every run")).to_have_value("card declined")
    await expect(results).to_have_count(4)
    await page.click(".search-close")
    await expect(page.locator(".agent-row")).to_have_count(3)


async def test_scrolling_to_the_end_of_the_results_loads_the_next_page_once(viewer: Viewer) -> None:
    page = viewer.page
    now = time.time()
    total = 2 * PAGE + 50
    await post_lines(
        viewer.api, "many-1", [{"message": f"tick {i} beacon", "ts": now - total + i} for i in range(total)]
    )
    await post_lines(viewer.api, "many-2", [{"message": "unrelated"}])
    asked: list[str] = []
    page.on("request", lambda request: "/api/search" in request.url and asked.append(request.url))
    await viewer.sign_in("/?search=beacon")
    results = page.locator(".result")
    await expect(results).to_have_count(PAGE)
    await expect(page.locator(".search-status")).to_have_text(f"{PAGE} newest matching lines so far; scroll for more")
    assert len(asked) == 1  # the end of the list is out of sight: nothing more is asked for yet

    for shown in (2 * PAGE, total):
        await page.locator(".result").last.scroll_into_view_if_needed()
        await expect(results).to_have_count(shown)
    await expect(page.locator(".search-status")).to_have_text(f"{total} matching lines, newest first")
    keys = await result_keys(page)
    assert keys == [f"many-1:{seq}" for seq in range(total, 0, -1)]  # newest first, none twice, none missing
    await page.locator(".result").last.scroll_into_view_if_needed()
    await page.wait_for_timeout(300)
    assert len(asked) == 3 and len(set(asked)) == 3  # one request per page, each its own cursor


async def test_a_result_opens_its_agent_at_that_line_marked_and_the_keyboard_gets_there(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "deep", [f"line {i}" + (" the-rare-one" if i == 37 else "") for i in range(1, 401)])
    await viewer.sign_in("/?search=the-rare-one")
    result = page.locator(".result")
    await expect(result).to_have_count(1)
    await expect(result.locator(".result-link")).to_have_attribute("href", "/?agent=deep#37")

    # From the box, the down arrow reaches the results and Enter opens one.
    await page.get_by_label("Search every run").focus()
    await page.keyboard.press("ArrowDown")
    await expect(result.locator(".result-link")).to_be_focused()
    await page.keyboard.press("Enter")
    target = page.locator(".row.target")
    await expect(target).to_have_attribute("data-key", "deep:37")
    await expect(target).to_be_in_viewport()
    assert page.url == viewer.url("/?agent=deep#37")
    await expect(page.locator(".log-page .connection")).to_have_attribute("data-state", "connected")

    # The back button returns to the results.
    await page.go_back()
    await expect(page.locator(".result")).to_have_count(1)


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


async def test_no_match_and_a_refused_query_say_so(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "quiet", ["nothing to see"])
    await viewer.sign_in("/?search=absent-word")
    await expect(page.locator(".search-status")).to_have_text("No line matches “absent-word”.")
    await expect(page.locator(".result")).to_have_count(0)
    await expect(page.locator(".search-error")).to_be_hidden()
    # A query without a word is refused by the server, in its words.
    await search_for(viewer, "--")
    error = page.locator(".search-error")
    await expect(error).to_have_text(re.compile(r"^The search failed: q '--' holds no word to search for"))
    await expect(error).to_have_attribute("role", "alert")
    await expect(page.locator(".search-status")).to_have_text("")
    # The next search clears it.
    await search_for(viewer, "nothing")
    await expect(page.locator(".result")).to_have_count(1)
    await expect(error).to_be_hidden()


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


async def test_a_coloured_word_is_found_and_highlighted_inside_its_colour_as_a_whole_word(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(
        viewer.api,
        "colour",
        [
            "\x1b[31mFAILED\x1b[0m tests/test_pay.py::test_refund",
            "unfailed and failedx",
            "\x1b[32mPASSED\x1b[0m test_charge, unfailed, 0 \x1b[1mfailed\x1b[0m",
        ],
    )
    # Loaded with the server's `q`: the colour's codes are not part of the word.
    await viewer.sign_in("/?agent=colour&q=failed")
    await expect(page.locator(".match-count")).to_have_text("2 matches")
    assert await viewer.row_keys() == ["colour:1", "colour:3"]
    await expect(page.locator(".row[data-key='colour:1'] .ansi-fg-1 mark.hit")).to_have_text(["FAILED"])
    # Whole words only: "unfailed" holds no highlight.
    await expect(page.locator(".row[data-key='colour:3'] mark.hit")).to_have_text(["failed"])
    await expect(page.locator(".row[data-key='colour:3'] .ansi-bold mark.hit")).to_have_count(1)
    # A live coloured line is kept by the same rule.
    await post_lines(viewer.api, "colour", ["\x1b[1;31mFAILED\x1b(B\x1b[m live, \x1b(B\x1b[mfailed again"])  # tput sgr0
    await expect(page.locator(".match-count")).to_have_text("3 matches")
    await expect(page.locator(".row[data-key='colour:4'] .msg")).to_have_text("FAILED live, failed again")
    await expect(page.locator(".row[data-key='colour:4'] mark.hit")).to_have_text(["FAILED", "failed"])
    # A prefix: at the start of words, coloured or not.
    await page.fill(".search-input", "fail*")
    await expect(page.locator(".match-count")).to_have_text("4 matches")
    assert await viewer.row_keys() == ["colour:1", "colour:2", "colour:3", "colour:4"]
    await expect(page.locator(".row[data-key='colour:2'] mark.hit")).to_have_text(["fail"])  # not in "unfailed"


async def test_a_coloured_word_found_across_runs_is_highlighted_in_its_message_and_field(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "ci-run", [
        "\x1b[31mFAILED\x1b[0m tests/test_pay.py::test_refund",
        {"message": "summary", "tail": "\x1b[1;31mfailed\x1b[0m 1, \x1b[32mpassed\x1b[0m 3"},
        "unfailed only",
    ])  # fmt: skip
    await viewer.sign_in("/?search=failed")
    await expect(page.locator(".result")).to_have_count(2)
    assert await result_keys(page) == ["ci-run:2", "ci-run:1"]
    first = page.locator(".result[data-key='ci-run:1']")
    await expect(first.locator(".result-msg")).to_have_text("FAILED tests/test_pay.py::test_refund")
    await expect(first.locator(".result-msg .ansi-fg-1 mark.hit")).to_have_text(["FAILED"])
    field = page.locator(".result[data-key='ci-run:2'] .result-field")
    await expect(field).to_have_text("tail: failed 1, passed 3")
    await expect(field.locator("mark.hit")).to_have_text(["failed"])
