"""Viewer tabs sharing their live data in Firefox ESR (module SharedWorker, EventSource inside it), driven by
puppeteer-core over WebDriver BiDi (browsers.py)."""

from __future__ import annotations

import pytest
from browsers import run_in_firefox
from conftest import ServerFactory

pytestmark = pytest.mark.slow  # a real browser

TABS = r"""
import puppeteer from 'puppeteer-core';
const [base, token, firefox] = process.argv.slice(2);
const agents = ['fox-0', 'fox-1', 'fox-2', 'fox-3', 'fox-4', 'fox-5'];
const post = (agent, lines) => fetch(`${base}/api/agents/${agent}/logs`, {
  method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
  body: JSON.stringify(lines),
}).then((r) => r.status);
const openStreams = async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^sentra_open_streams (\d+)/m.exec(text)[1]);
};
const browser = await puppeteer.launch({ browser: 'firefox', executablePath: firefox, headless: true });
const result = { errors: [], rows: {}, counts: {} };
try {
  for (const agent of agents) await post(agent, [`${agent} starts`]);
  const list = await browser.newPage();
  list.on('pageerror', (error) => result.errors.push(String(error)));
  await list.goto(`${base}/?token=${token}`);
  await list.waitForSelector('.agents-page .connection[data-state="connected"]', { timeout: 15000 });
  result.supports = await list.evaluate(() => typeof SharedWorker === 'function' && Boolean(navigator.locks));
  const tabs = [];
  for (const agent of agents) {
    const tab = await browser.newPage();
    tab.on('pageerror', (error) => result.errors.push(String(error)));
    await tab.goto(`${base}/?agent=${agent}`);
    await tab.waitForSelector('.log-page .connection[data-state="connected"]', { timeout: 15000 });
    tabs.push(tab);
  }
  const waiting = await browser.newPage();
  await waiting.goto(`${base}/?agent=fox-later`);
  await waiting.waitForSelector('.log-page .connection[data-state="waiting"]', { timeout: 15000 });
  const posted = Date.now();
  for (const agent of [...agents, 'fox-later']) await post(agent, [`${agent} goes on`]);
  for (const [index, agent] of agents.entries()) {
    await tabs[index].waitForSelector(`.row[data-key="${agent}:2"]`, { timeout: 10000 });
    result.rows[agent] = await tabs[index].$$eval('.log .row', (rows) => rows.map((row) => row.dataset.key));
  }
  await waiting.waitForSelector('.row[data-key="fox-later:1"]', { timeout: 10000 });
  result.rows['fox-later'] = await waiting.$$eval('.log .row .msg', (rows) => rows.map((row) => row.textContent));
  result.seconds = (Date.now() - posted) / 1000;
  for (const agent of agents) {
    await list.waitForFunction(
      (id) => document.querySelector(`.agent-row[data-id="${id}"] .line-count`)?.textContent === '2 lines',
      { timeout: 10000 }, agent);
  }
  result.listed = await list.$$eval('.agent-row', (rows) => rows.length);
  const deadline = Date.now() + 5000;
  do {
    result.streams = await openStreams();
  } while (result.streams !== 2 && Date.now() < deadline && await new Promise((ok) => setTimeout(ok, 100, true)));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
"""


@pytest.mark.timeout(240)
async def test_firefox_tabs_share_one_stream_and_all_show_their_lines(start_server: ServerFactory) -> None:
    _, result = await run_in_firefox(start_server, TABS, "fox-tabs", 200)
    assert result["errors"] == []
    assert result["supports"] is True  # Firefox ESR runs the module SharedWorker (and has Web Locks)
    for index in range(6):
        assert result["rows"][f"fox-{index}"] == [f"fox-{index}:1", f"fox-{index}:2"]
    assert result["rows"]["fox-later"] == ["fox-later goes on"]  # opened before the agent existed
    assert result["seconds"] < 10
    assert result["listed"] == 7
    # Eight tabs, two connections: the lines stream they share and the agents feed.
    assert result["streams"] == 2
