"""The README's browser agent example, run exactly as written (a Python script of the client) against a real server,
then its run read back through the API and shown on the agent page in headless Chromium (browsers.py)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from browsers import Viewer, expect
from processes import ROOT

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a child process and a real browser

SECTION = "## A browser agent, step by step"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def readme_example() -> str:
    """The first Python block of the README's browser agent section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, f"no python block under {SECTION!r}"
    return found.group(1)


async def run_example(viewer: Viewer, folder: Path) -> None:
    """Save the example as browser_agent.py and run it with Python, as the README says, for the viewer's user."""
    script = folder / "browser_agent.py"
    script.write_text(readme_example())
    env = {
        **os.environ,
        "SENTRA_URL": viewer.server.url,
        "SENTRA_TOKEN": viewer.token,
        "PYTHONPATH": str(ROOT),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=folder, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    assert err.decode() == "", "the example printed a complaint"


async def test_the_readme_browser_agent_example_runs_as_written_and_shows_its_steps(
    viewer: Viewer, tmp_path: Path
) -> None:
    await run_example(viewer, tmp_path)
    agent = (await viewer.api.get("/api/agents/shop-bot")).json()
    assert (agent["status"], agent["name"], agent["labels"]) == ("completed", "shop bot", {"kind": "browser"})
    lines = (await viewer.api.get("/api/agents/shop-bot/logs")).json()["lines"]
    steps = [(line["message"], (line.get("fields") or {}).get("step")) for line in lines]
    assert steps == [
        ("navigating", "open the shop"),
        ("the home page", "open the shop"),
        ("typing the query", "search for a kettle"),
        ("the results were slow to load", "search for a kettle"),
        ("12 results", "search for a kettle"),
        ("looking for the coupon field", "apply a coupon"),
        ("step failed: TimeoutError: no coupon field on the page", "apply a coupon"),
        ("going on without a coupon", None),
        ("clicking 'Add to basket'", "add to the basket"),
        ("1 item in the basket", "add to the basket"),
    ]
    shots = [line["fields"]["attachment"] for line in lines if "attachment" in (line.get("fields") or {})]
    assert [shot["name"] for shot in shots] == ["home.png", "results.png", "basket.png"]
    for shot in shots:
        image = await viewer.api.get(shot["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content.startswith(PNG_SIGNATURE) and len(image.content) == shot["size"]

    page = viewer.page
    await viewer.sign_in("/?agent=shop-bot")
    headers = page.locator(".log .step-row")
    await expect(headers.locator(".step-name")).to_have_text(
        ["open the shop", "search for a kettle", "apply a coupon", "add to the basket"]
    )
    await expect(headers.locator(".step-count")).to_have_text(["2 lines", "3 lines", "2 lines", "2 lines"])
    await expect(headers.locator(".step-level")).to_have_text(["INFO", "WARNING", "ERROR", "INFO"])
    await expect(headers.nth(2).locator(".step-status")).to_have_text("failed")
    # The screenshots show as images the browser decoded: 64×40 pixels each.
    images = page.locator(".log img")
    await expect(images).to_have_count(3)
    for index in range(3):
        await expect(images.nth(index)).to_have_js_property("naturalWidth", 64)
    # The README's picture of the page (docs/browser-agent.png), from its first line.
    await page.set_viewport_size({"width": 1280, "height": 1000})
    await page.keyboard.press("g")
    await expect(headers.first).to_be_in_viewport()
    await viewer.screenshot("browser-agent")
