"""A smoke test of the viewer in Firefox: Debian's firefox-esr driven over WebDriver BiDi by puppeteer-core
(browsers.py)."""

from __future__ import annotations

import pytest
from browsers import run_in_firefox
from conftest import ServerFactory

pytestmark = pytest.mark.slow  # a real browser

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


@pytest.mark.timeout(180)
async def test_viewer_smoke_in_firefox(start_server: ServerFactory) -> None:
    url, result = await run_in_firefox(start_server, SMOKE, "fox-user", 150)
    assert result["errors"] == []
    assert result["address"] == url + "/"  # the token left the address bar
    assert result["agentName"] == "firefox run"
    assert result["messages"] == ["red plain", "second line"]
    assert result["red"] == ["red"]
    assert result["finished"] is True
