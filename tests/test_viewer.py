"""The web viewer in real headless Chromium (browsers.py): sign-in, the live agents page, the live agent page,
filters."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from browsers import PHONE, VIEWER_SETTINGS, Viewer, close_viewer, expect, open_viewer
from conftest import RunningServer, post_lines, running_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser


# ---- sign-in ----------------------------------------------------------------------------------------


async def test_sign_in_link_sets_an_httponly_cookie_and_leaves_no_token_in_the_address(viewer: Viewer) -> None:
    page = viewer.page
    response = await page.goto(viewer.url(f"/?token={viewer.token}"))
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await expect(page.locator(".agents-page")).to_be_visible()
    assert "token" not in page.url
    cookie = next(c for c in await viewer.context.cookies() if c["name"] == "sentra_token")
    assert cookie["value"] == viewer.token
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert "sentra_token" not in await page.evaluate("document.cookie")  # scripts cannot read it
    await expect(page.locator(".who")).to_have_text(viewer.user)

    await page.reload()
    await expect(page.locator(".agents-page")).to_be_visible()

    await page.click(".sign-out")
    await expect(page.locator(".sign-in")).to_be_visible()
    assert not [c for c in await viewer.context.cookies() if c["name"] == "sentra_token"]

    await page.fill("#token-input", viewer.token)
    await page.click(".sign-in button[type=submit]")
    await expect(page.locator(".agents-page")).to_be_visible()


async def test_a_bad_token_in_the_link_shows_why_and_is_removed_too(viewer: Viewer) -> None:
    page = viewer.page
    await page.goto(viewer.url("/?token=not-a-jwt&agent=x"))
    await expect(page.locator(".sign-in-error")).to_contain_text("not valid")
    assert "token" not in page.url and "agent=x" in page.url


async def test_viewer_works_without_sign_in_when_auth_is_off(browser: Any, tmp_path: Path) -> None:
    async with running_server(tmp_path / "open.db", **{"auth.mode": "none", **VIEWER_SETTINGS}) as server:
        tab = await open_viewer(browser, server)
        try:
            await post_lines(tab.api, "local-run", ["hello without a token"])
            await tab.page.goto(server.url + "/")
            await expect(tab.page.locator(".agent-row")).to_have_count(1)
            await expect(tab.page.locator(".sign-out")).to_be_hidden()
            await tab.page.click(".agent-name")
            await expect(tab.page.locator(".log .row .msg")).to_have_text(["hello without a token"])
        finally:
            await close_viewer(tab)


# ---- the agents page ------------------------------------------------------------------------------


async def test_agents_page_shows_a_new_agent_its_lines_and_its_completion_live(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    await expect(page.locator(".empty-state")).to_be_visible()
    await expect(page.locator(".agents-page .connection")).to_have_attribute("data-state", "connected")

    created = await viewer.api.post(
        "/api/agents", json={"id": "crawler-1", "name": "crawler", "labels": {"batch": "9"}}
    )
    assert created.status_code == 201
    row = page.locator(".agent-row[data-id='crawler-1']")
    await expect(row.locator(".agent-name")).to_have_text("crawler")
    await expect(row.locator(".badge")).to_have_text("running")
    await expect(row.locator(".label")).to_have_text(["batch=9"])

    await post_lines(viewer.api, "crawler-1", [f"line {i}" for i in range(7)])
    await expect(row.locator(".line-count")).to_contain_text("7")
    await expect(row.locator(".activity")).to_have_text(re.compile(r"just now|\d+ s ago"))

    await viewer.api.patch("/api/agents/crawler-1", json={"status": "completed"})
    await expect(row.locator(".badge")).to_have_text("completed")

    await post_lines(viewer.api, "other-2", ["x"])
    await expect(page.locator(".agent-row")).to_have_count(2)
    await page.fill(".agent-filter", "batch=9")
    await expect(page.locator(".agent-row")).to_have_count(1)
    assert "find=batch%3D9" in page.url
    await viewer.screenshot("agents-page")
    await page.click(".agent-row[data-id='crawler-1'] .agent-name")
    await expect(page.locator(".log-page .title .name")).to_have_text("crawler")


# ---- the agent page -------------------------------------------------------------------------------

RED, GREEN, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"


async def test_lines_arrive_live_in_order_with_colours_fields_and_final_status(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "live", ["first line"])
    await viewer.sign_in("/?agent=live")
    connection = page.locator(".log-page .connection")
    await expect(connection).to_have_attribute("data-state", "connected")
    await expect(page.locator(".log .row")).to_have_count(1)

    await post_lines(
        viewer.api,
        "live",
        [
            {"message": f"{GREEN}ok{RESET} test_a {BOLD}{RED}FAILED{RESET} test_b", "level": "warning"},
            {"message": "Traceback (most recent call last):\n  File 'x.py'\nValueError: boom", "level": "error",
             "source": "stderr"},
            {"message": "clicked", "url": "https://example.com/a", "rows": 1200},
        ],
    )  # fmt: skip
    for i in range(20):
        await post_lines(viewer.api, "live", [f"tick {i}"])
    await expect(page.locator(".log .row").last.locator(".msg")).to_have_text("tick 19")
    keys = await viewer.row_keys()
    assert keys == [f"live:{seq}" for seq in range(1, 25)]

    ansi = page.locator(".row[data-key='live:2'] .msg")
    await expect(ansi).to_have_text("ok test_a FAILED test_b")
    await expect(ansi.locator(".ansi-fg-2")).to_have_text("ok")
    await expect(ansi.locator(".ansi-fg-1.ansi-bold")).to_have_text("FAILED")
    assert "\x1b" not in await page.locator(".log").inner_text()
    green, default = await ansi.evaluate(
        "(msg) => [getComputedStyle(msg.querySelector('.ansi-fg-2')).color, getComputedStyle(msg).color]"
    )
    assert green != default

    traceback = page.locator(".row[data-key='live:3']")
    await expect(traceback.locator(".msg")).to_have_text(
        "Traceback (most recent call last):\n  File 'x.py'\nValueError: boom"
    )
    await expect(traceback.locator(".level")).to_have_text("ERROR")
    await expect(traceback.locator(".source")).to_have_text("stderr")
    assert await traceback.evaluate("(row) => row.offsetHeight") >= 3 * 20

    fields = page.locator(".row[data-key='live:4'] .fields")
    await expect(fields.locator(".fields-count")).to_have_text("2 fields")
    await expect(fields.locator(".fields-json")).to_have_count(0)
    below = page.locator(".row[data-key='live:5']")
    top_before = await below.evaluate("(row) => row.getBoundingClientRect().top")
    await fields.locator(".fields-toggle").click()
    await expect(fields.locator(".fields-json")).to_contain_text('"rows": 1200')
    # The rows below make room for the expanded fields instead of being overlapped.
    top_after = await below.evaluate("(row) => row.getBoundingClientRect().top")
    fields_bottom = await fields.evaluate("(block) => block.getBoundingClientRect().bottom")
    assert top_after >= fields_bottom - 1 and top_after != top_before

    await viewer.screenshot("agent-page")
    await viewer.api.patch("/api/agents/live", json={"status": "failed", "reason": "out of memory"})
    await expect(connection).to_have_text("finished: failed")
    await expect(page.locator(".log-page .title .badge")).to_have_text("failed")


async def test_follow_pauses_on_scroll_up_counts_new_lines_and_resumes_with_end(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "busy", [f"line {i}" for i in range(300)])
    await viewer.sign_in("/?agent=busy")
    await expect(page.locator(".row[data-key='busy:300']")).to_be_visible()
    follow = page.locator(".follow")
    await expect(follow).to_have_attribute("aria-pressed", "true")

    await page.hover(".log")
    await page.mouse.wheel(0, -600)
    await expect(follow).to_have_attribute("aria-pressed", "false")
    scrolled = await page.evaluate("document.querySelector('.log').scrollTop")
    await post_lines(viewer.api, "busy", [f"new {i}" for i in range(5)])
    new_lines = page.locator(".new-lines")
    await expect(new_lines).to_have_text("5 new lines ↓")
    assert await page.evaluate("document.querySelector('.log').scrollTop") == scrolled  # the view did not move
    await expect(page.locator(".row[data-key='busy:300']")).not_to_be_in_viewport()

    await page.keyboard.press("End")
    await expect(new_lines).to_be_hidden()
    await expect(follow).to_have_attribute("aria-pressed", "true")
    await expect(page.locator(".row[data-key='busy:305']")).to_be_in_viewport()
    await post_lines(viewer.api, "busy", ["after resuming"])
    await expect(page.locator(".row[data-key='busy:306']")).to_be_in_viewport()

    await page.keyboard.press("g")
    await expect(page.locator(".row[data-key='busy:1']")).to_be_in_viewport()
    await expect(follow).to_have_attribute("aria-pressed", "false")
    await page.keyboard.press("G")
    await expect(page.locator(".row[data-key='busy:306']")).to_be_in_viewport()
    await page.keyboard.press("f")
    await expect(follow).to_have_attribute("aria-pressed", "false")
    await follow.click()
    await expect(follow).to_have_attribute("aria-pressed", "true")


async def test_level_source_and_search_filters_highlight_and_live_in_the_url(viewer: Viewer) -> None:
    page = viewer.page
    lines: list[Any] = []
    for i in range(60):
        level = ["info", "debug", "warning", "error"][i % 4]
        source = "stderr" if i % 3 == 0 else "stdout"
        word = "needle" if i % 10 == 0 else "hay"
        lines.append({"message": f"{word} {i} {GREEN}Needle{RESET}" if i == 20 else f"{word} {i}",
                      "level": level, "source": source})  # fmt: skip
    await post_lines(viewer.api, "filters", lines)
    await viewer.sign_in("/?agent=filters")
    await expect(page.locator(".counts")).to_have_text("60 lines")

    await page.select_option(".level-select", "ERROR")
    await expect(page.locator(".counts")).to_have_text("15 of 60 loaded lines shown")
    assert set(await page.locator(".log .row .level").all_inner_texts()) == {"ERROR"}
    assert "level=ERROR" in page.url

    await page.select_option(".level-select", "DEBUG")
    await page.keyboard.press("/")
    await page.keyboard.type("NEEDLE")
    await expect(page.locator(".match-count")).to_have_text("6 matches")
    marks = page.locator(".log mark.hit")
    await expect(marks).to_have_count(7)  # line 20 has two, one inside a colour span
    assert {text.lower() for text in await marks.all_inner_texts()} == {"needle"}
    assert "q=NEEDLE" in page.url

    await page.select_option(".source-select", "stderr")
    await expect(page.locator(".match-count")).to_have_text("2 matches")  # 0 and 30
    assert "source=stderr" in page.url

    # A shared link opens the same view.
    shared = page.url
    await page.goto(shared)
    await expect(page.locator(".search-input")).to_have_value("NEEDLE")
    await expect(page.locator(".level-select")).to_have_value("DEBUG")
    await expect(page.locator(".source-select")).to_have_value("stderr")
    await expect(page.locator(".match-count")).to_have_text("2 matches")
    keys = await viewer.row_keys()
    assert keys == ["filters:1", "filters:31"]

    # Clearing the search brings back every line (asked from the server again, as the link loaded only matches).
    await page.fill(".search-input", "")
    await page.select_option(".source-select", "")
    await page.select_option(".level-select", "DEBUG")
    await expect(page.locator(".counts")).to_have_text("60 lines")


async def test_search_of_lines_beyond_the_loaded_ones_asks_the_server(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "long", ["rare 0"] + [f"common {i}" for i in range(1, 10000)])
    await post_lines(viewer.api, "long", [f"common {i}" for i in range(10000, 10050)])
    await viewer.sign_in("/?agent=long")
    await expect(page.locator(".counts")).to_have_text("10,050 lines")
    await page.fill(".search-input", "rare")
    await expect(page.locator(".match-count")).to_have_text("1 match")
    await expect(page.locator(".row[data-key='long:1'] mark.hit")).to_have_text("rare")
    # Lines that match the search still arrive live.
    await post_lines(viewer.api, "long", ["another rare one", "common again"])
    await expect(page.locator(".match-count")).to_have_text("2 matches")


async def test_copy_line_copy_link_and_permalink_open_at_the_line(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "links", [{"message": f"line {i}", "source": "stdout"} for i in range(1, 401)])
    await viewer.sign_in("/?agent=links")
    row = page.locator(".row[data-key='links:400']")
    await row.hover()
    await row.locator(".copy-line").click()
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied.endswith("INFO [stdout] line 400") and copied.startswith(time.strftime("%Y-"))
    await row.locator(".copy-link").click()
    link = await page.evaluate("navigator.clipboard.readText()")
    assert link == viewer.url("/?agent=links#400")

    await page.goto(viewer.url("/?agent=links#37"))
    target = page.locator(".row.target")
    await expect(target).to_have_attribute("data-key", "links:37")
    await expect(target).to_be_in_viewport()
    await expect(page.locator(".follow")).to_have_attribute("aria-pressed", "false")


async def test_download_links_give_the_whole_log_as_text_and_ndjson(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "dl", [f"{RED}red{RESET} {i}" for i in range(3)])
    await viewer.sign_in("/?agent=dl")
    await page.click(".menu summary")
    links = page.locator(".downloads a")
    await expect(links).to_have_text(["Text (.log)", "NDJSON"])
    hrefs = [await link.get_attribute("href") for link in await links.all()]
    # Fetched as the browser would, with the session cookie.
    text = await page.evaluate("(href) => fetch(href).then((r) => r.text())", hrefs[0])
    assert text == "".join(f"{RED}red{RESET} {i}\n" for i in range(3))
    ndjson = await page.evaluate("(href) => fetch(href).then((r) => r.text())", hrefs[1])
    assert [line.count('"seq"') for line in ndjson.splitlines()] == [1, 1, 1]


async def test_phone_width_and_dark_theme(browser: Any, site: RunningServer) -> None:
    tab = await open_viewer(browser, site, viewport=PHONE, scheme="dark")
    try:
        await post_lines(tab.api, "small", [{"message": "a long message " * 20, "level": "error"}, "short"])
        await tab.sign_in()
        await tab.screenshot("agents-page-phone-dark")
        await tab.page.goto(tab.url("/?agent=small"))
        await expect(tab.page.locator(".log .row")).to_have_count(2)
        await tab.screenshot("agent-page-phone-dark")
        widths = await tab.page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1]  # nothing wider than the phone: no sideways scrolling
        message = tab.page.locator(".row[data-key='small:1'] .msg")
        box = await message.bounding_box()
        assert box is not None and box["x"] < 40 and box["width"] > 300  # the message uses the full width
        background = await tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"  # the dark theme, as the system asks
    finally:
        await close_viewer(tab)


async def test_sentra_js_connect_follows_an_agent_from_any_page(viewer: Viewer) -> None:
    page = viewer.page
    await post_lines(viewer.api, "hooked", ["one", "two"])
    await viewer.sign_in()
    await page.evaluate(
        """async () => {
            const { connect } = await import('/sentra.js');
            window.events = [];
            window.seen = [];
            window.logs = connect('hooked', {
                onConnect: () => events.push('connect'),
                onClose: () => events.push('close'),
                onUpdate: (data) => seen.push(data.lines.length),
                onChange: (state) => { window.snapshot = { ...state }; },
            });
        }"""
    )
    await page.wait_for_function("() => window.logs.isConnected && window.logs.lines.length === 2")
    await post_lines(viewer.api, "hooked", ["three"])
    await page.wait_for_function("() => window.logs.lines.length === 3")
    assert await page.evaluate("window.logs.logs") == "one\ntwo\nthree\n"
    assert await page.evaluate("window.snapshot.lines.map((line) => line.seq)") == [1, 2, 3]
    await viewer.api.patch("/api/agents/hooked", json={"status": "completed"})
    await page.wait_for_function("() => window.logs.isFinished")
    state = await page.evaluate("({status: logs.status, connected: logs.isConnected, events: window.events})")
    assert state == {"status": "completed", "connected": False, "events": ["connect", "close"]}

    # With a token instead of the cookie: the token buys a stream ticket and is never put in a URL.
    other = await open_viewer(viewer.page.context.browser, viewer.server)
    try:
        await other.page.goto(viewer.url("/favicon.svg"))
        requested: list[str] = []
        other.page.on("request", lambda request: requested.append(request.url))
        await other.page.evaluate(
            """async (token) => {
                const { connect } = await import('/sentra.js');
                window.logs = connect('hooked', { token, maxLines: 2 });
            }""",
            viewer.token,
        )
        await other.page.wait_for_function("() => window.logs.isFinished")
        assert await other.page.evaluate("window.logs.logs") == "two\nthree\n"
        assert not [url for url in requested if viewer.token in url]
    finally:
        await close_viewer(other)


async def test_sentra_js_connect_with_wait_follows_an_agent_created_later(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    await page.evaluate(
        """async () => {
            const { connect } = await import('/sentra.js');
            window.early = connect('made-later', { wait: true });
            window.eager = connect('made-later-too', { onError: (error) => { window.failure = error; } });
        }"""
    )
    # With wait the stream opens and waits; without it the 404 ends it at once, saying so.
    await page.wait_for_function("() => window.early.isConnected && window.failure")
    failure = await page.evaluate("({fatal: failure.fatal, status: failure.status, message: failure.message})")
    assert failure == {"fatal": True, "status": 404, "message": "no agent 'made-later-too'"}
    await post_lines(viewer.api, "made-later", ["here at last"])
    await page.wait_for_function("() => window.early.lines.length === 1")
    assert await page.evaluate("[window.early.logs, window.early.status]") == ["here at last\n", "running"]


async def test_strict_csp_blocks_inline_script_and_the_viewer_needs_none(viewer: Viewer) -> None:
    page = viewer.page
    await viewer.sign_in()
    await expect(page.locator(".agents-page .connection")).to_have_attribute("data-state", "connected")
    assert viewer.problems == []  # the whole viewer ran without one violation
    await page.evaluate(
        """() => {
            const script = document.createElement('script');
            script.textContent = 'window.injected = true';
            document.body.appendChild(script);
        }"""
    )
    await page.wait_for_timeout(100)
    assert await page.evaluate("() => window.injected === undefined")
    assert [problem for problem in viewer.problems if problem.startswith("CSP:")]
    viewer.problems.clear()
