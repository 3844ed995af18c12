"""A smoke test of the viewer in Firefox: Debian's firefox-esr driven over WebDriver BiDi by puppeteer-core.

puppeteer-core (no browser download of its own) is installed from the npm registry into a cache folder the
first time. Without node, npm or firefox-esr the test skips with the reason; under CI it fails instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ServerFactory

FIREFOX = os.environ.get("SENTRA_FIREFOX", "/usr/bin/firefox-esr")
# puppeteer-core 24 still runs on Node 18 and 20; 25 needs Node 22.
PUPPETEER = "puppeteer-core@24"
CACHE = Path(os.environ.get("SENTRA_NODE_CACHE", Path.home() / ".cache" / "sentra-tests" / "node"))

SMOKE = r"""
import puppeteer from 'puppeteer-core';
const [base, token, firefox] = process.argv.slice(2);
const api = (path, body, method = 'POST') => fetch(base + path, {
  method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
  body: JSON.stringify(body),
}).then((r) => r.status);
const browser = await puppeteer.launch({ browser: 'firefox', executablePath: firefox, headless: true });
const result = { errors: [] };
try {
  const page = await browser.newPage();
  page.on('pageerror', (error) => result.errors.push(String(error)));
  await page.goto(`${base}/?token=${token}`);
  await page.waitForSelector('.agents-page .connection[data-state="connected"]', { timeout: 15000 });
  result.address = page.url();
  await api('/api/agents', { id: 'fox', name: 'firefox run' });
  await page.waitForSelector('.agent-row[data-id="fox"]', { timeout: 15000 });
  result.agentName = await page.$eval('.agent-row[data-id="fox"] .agent-name', (el) => el.textContent);
  await page.goto(`${base}/?agent=fox`);
  await page.waitForSelector('.log-page .connection[data-state="connected"]', { timeout: 15000 });
  await api('/api/agents/fox/logs', ['\x1b[31mred\x1b[0m plain', 'second line']);
  await page.waitForSelector('.row[data-key="fox:2"]', { timeout: 15000 });
  result.messages = await page.$$eval('.log .row .msg', (rows) => rows.map((row) => row.textContent));
  result.red = await page.$$eval('.log .ansi-fg-1', (spans) => spans.map((span) => span.textContent));
  await api('/api/agents/fox', { status: 'completed' }, 'PATCH');
  await page.waitForSelector('.log-page .connection[data-state="finished"]', { timeout: 15000 });
  result.finished = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
"""


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


@pytest.mark.timeout(180)
async def test_viewer_smoke_in_firefox(start_server: ServerFactory) -> None:
    folder, problem = smoke_setup()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail(f"the Firefox smoke test must run in CI: {problem}")
        pytest.skip(problem or "")
    server = await start_server(**{"streams.retry": "300ms"})
    script = folder / "viewer-smoke.mjs"
    script.write_text(SMOKE)
    process = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        server.url,
        server.token("fox-user"),
        FIREFOX,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=folder,
    )
    out, err = await asyncio.wait_for(process.communicate(), 150)
    assert process.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["address"] == server.url + "/"  # the token left the address bar
    assert result["agentName"] == "firefox run"
    assert result["messages"] == ["red plain", "second line"]
    assert result["red"] == ["red"]
    assert result["finished"] is True
