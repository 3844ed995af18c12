"""Real browsers for the viewer's tests: headless Chromium driven by Playwright's Python package (its own
driver, the system's browser), and Firefox ESR driven over WebDriver BiDi by puppeteer-core.

Without a browser the tests that need it skip with the reason; under CI (CI set) they fail instead, since .ci/run
installs them. puppeteer-core (no browser download of its own) is installed from the npm registry into a cache
folder the first time. Screenshots go to $SENTRA_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import RunningServer, ServerFactory, running_server

CHROMIUM = os.environ.get("SENTRA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWER_SETTINGS = {"streams.retry": "300ms"}
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 800}


# ---- Chromium ---------------------------------------------------------------------------------------------


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if shutil.which(CHROMIUM) is None:
        return f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is missing (pip install -e '.[test]')"
    return None


@pytest_asyncio.fixture(name="browser", scope="module", loop_scope="module")
async def browser_fixture() -> AsyncIterator[Any]:
    """One headless Chromium for the module (each test gets its own context: cookies, storage)."""
    problem = browser_missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(name="site", scope="module", loop_scope="module")
async def site_fixture(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    """One Sentra server for the module; each test signs in as its own user, so it sees only its agents."""
    async with running_server(tmp_path_factory.mktemp("viewer") / "sentra.db", **VIEWER_SETTINGS) as server:
        yield server


@dataclass
class Viewer:
    """A browser tab signed in (or not) as one user, and an API client for the same user."""

    server: RunningServer
    context: Any
    page: Any
    user: str
    api: httpx.AsyncClient
    problems: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.server.token(self.user)

    def url(self, path: str = "/") -> str:
        return self.server.url + path

    async def sign_in(self, path: str = "/") -> None:
        """Open the link Sentra prints at start-up (the token in the address), then go to `path`."""
        await self.page.goto(self.url(f"/?token={self.token}"))
        await self.page.wait_for_selector(".agents-page, .sign-in")
        if path != "/":
            await self.page.goto(self.url(path))

    async def row_keys(self) -> list[str]:
        """The data-key (agent:seq) of every rendered log row, top to bottom."""
        return await keys_of(self.page)

    async def screenshot(self, name: str) -> None:
        """Save a PNG of the page into $SENTRA_SCREENSHOTS, if set."""
        folder = os.environ.get("SENTRA_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(Path(folder) / f"{name}.png"))


def watch(page: Any, problems: list[str]) -> None:
    """Record the page's CSP violations and uncaught errors into `problems`."""
    page.on(
        "console", lambda message: "Content Security Policy" in message.text and problems.append(f"CSP: {message.text}")
    )
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))


async def keys_of(page: Any) -> list[str]:
    """The data-key (agent:seq) of every rendered log row of a page, top to bottom."""
    keys: list[str] = await page.evaluate(
        """() => [...document.querySelectorAll('.log .row')]
            .map((row) => [row.getBoundingClientRect().top, row.dataset.key])
            .sort((a, b) => a[0] - b[0]).map((pair) => pair[1])"""
    )
    return keys


async def open_viewer(
    browser: Any, server: RunningServer, *, viewport: dict[str, int] = WIDE, scheme: str = "light"
) -> Viewer:
    """A fresh browser context (no cookies) and page, recording CSP violations and uncaught errors."""
    context = await browser.new_context(
        viewport=viewport, color_scheme=scheme, permissions=["clipboard-read", "clipboard-write"]
    )
    page = await context.new_page()
    user = f"u{uuid.uuid4().hex[:10]}"
    viewer = Viewer(server, context, page, user, server.client(user))
    watch(page, viewer.problems)
    return viewer


async def close_viewer(viewer: Viewer) -> None:
    """Close the tab; fail if the page broke its CSP or threw."""
    await viewer.api.aclose()
    await viewer.context.close()
    assert viewer.problems == []


@pytest_asyncio.fixture(name="viewer", loop_scope="module")
async def viewer_fixture(browser: Any, site: RunningServer) -> AsyncIterator[Viewer]:
    """A fresh tab on the module's server, as a user of its own."""
    tab = await open_viewer(browser, site)
    yield tab
    await close_viewer(tab)


def expect(target: Any) -> Any:
    """Playwright's auto-waiting assertions."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


# ---- Firefox --------------------------------------------------------------------------------------------------

FIREFOX = os.environ.get("SENTRA_FIREFOX", "/usr/bin/firefox-esr")
# puppeteer-core 24 still runs on Node 18 and 20; 25 needs Node 22.
PUPPETEER = "puppeteer-core@24"
CACHE = Path(os.environ.get("SENTRA_NODE_CACHE", Path.home() / ".cache" / "sentra-tests" / "node"))


def smoke_setup() -> tuple[Path | None, str | None]:
    """The folder holding puppeteer-core (installed if needed), or why the test cannot run."""
    if shutil.which(FIREFOX) is None:
        return None, f"Firefox is not installed at {FIREFOX} (Debian: apt-get install firefox-esr)"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None, "Node.js and npm are needed to drive Firefox with puppeteer-core"
    if not (CACHE / "node_modules" / "puppeteer-core").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        install = subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", PUPPETEER],
            capture_output=True,
            text=True,
            timeout=240,
        )
        if install.returncode != 0:
            return None, f"npm could not install {PUPPETEER}: {install.stderr.strip()[-300:]}"
    return CACHE, None


async def run_in_firefox(start_server: ServerFactory, script: str, user: str, timeout: float) -> tuple[str, Any]:
    """Run a puppeteer-core script against a new server as `user`: the server's URL and the JSON the script printed
    last (skips where Firefox cannot run; fails instead under CI)."""
    folder, problem = smoke_setup()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail(f"the Firefox tests must run in CI: {problem}")
        pytest.skip(problem or "")
    server = await start_server(**VIEWER_SETTINGS)
    path = folder / f"{user}.mjs"
    path.write_text(script)
    process = await asyncio.create_subprocess_exec(
        "node",
        str(path),
        server.url,
        server.token(user),
        FIREFOX,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=folder,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, err.decode()[-2000:]
    return server.url, json.loads(out.decode().strip().splitlines()[-1])
