"""A browser app on another origin writes to Sentra: real headless Chromium runs a page served from a second
loopback origin, whose fetch() calls need a CORS pre-flight (Authorization and a JSON body). The origin listed in
server.cors_origins posts lines and finishes the run and reads every answer; an origin not listed is refused by the
browser itself, and nothing of its requests is stored."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tornado.httpserver
import tornado.netutil
import tornado.web
from conftest import RunningServer, running_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real browser

# The app's page: two calls as a browser app makes them, each giving back what the page could read of the answer.
APP_PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>another app</title>
<script>
async function call(method, url, token, body, extra) {
  try {
    const answer = await fetch(url, {
      method,
      headers: {Authorization: "Bearer " + token, "Content-Type": "application/json", ...extra},
      body: JSON.stringify(body),
    });
    return {status: answer.status, body: await answer.json(), replayed: answer.headers.get("Idempotent-Replayed")};
  } catch (error) {
    return {refused: String(error)};
  }
}
</script>
"""


class AppPage(tornado.web.RequestHandler):
    """The other app's one page."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(APP_PAGE)


def serve_app() -> tuple[tornado.httpserver.HTTPServer, str]:
    """The other app on a loopback port of its own: the server and its origin."""
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/", AppPage)]))
    server.add_sockets(sockets)
    return server, f"http://127.0.0.1:{sockets[0].getsockname()[1]}"


@pytest_asyncio.fixture(loop_scope="module")
async def origins(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, str, str]]:
    """Sentra with one app's origin listed in server.cors_origins; that origin, and another app's that is not."""
    listed_app, listed = serve_app()
    other_app, unlisted = serve_app()
    try:
        async with running_server(tmp_path / "sentra.db", **{"server.cors_origins": [listed]}) as sentra:
            yield sentra, listed, unlisted
    finally:
        listed_app.stop()
        other_app.stop()


async def call_from(page: Any, method: str, url: str, token: str, body: Any, extra: dict[str, str]) -> Any:
    """What the app's page gets back from one fetch()."""
    return await page.evaluate("([m, u, t, b, e]) => call(m, u, t, b, e)", [method, url, token, body, extra])


async def test_a_listed_origin_posts_lines_and_finishes_the_run_and_reads_the_answers(
    browser: Any, origins: tuple[RunningServer, str, str]
) -> None:
    sentra, listed, _ = origins
    token = sentra.token("alice")
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(listed + "/")
        logs = f"{sentra.url}/api/agents/web-app/logs"
        retry = {"Idempotency-Key": "batch-1"}
        posted = await call_from(page, "POST", logs, token, ["from the browser", {"message": "second"}], retry)
        again = await call_from(page, "POST", logs, token, ["from the browser", {"message": "second"}], retry)
        finished = await call_from(
            page, "PATCH", f"{sentra.url}/api/agents/web-app", token, {"status": "completed"}, {}
        )
    finally:
        await context.close()
    assert posted == {"status": 200, "body": {"accepted": 2, "first_seq": 1, "last_seq": 2}, "replayed": None}
    assert again == {**posted, "replayed": "true"}  # an exposed header: the app can tell a replay
    assert finished["status"] == 200 and finished["body"]["status"] == "completed"
    async with sentra.client("alice") as alice:
        history = (await alice.get("/api/agents/web-app/logs")).json()
    assert [line["message"] for line in history["lines"]] == ["from the browser", "second"]


async def test_an_origin_not_listed_is_refused_by_the_browser_and_nothing_is_stored(
    browser: Any, origins: tuple[RunningServer, str, str]
) -> None:
    sentra, _, unlisted = origins
    token = sentra.token("alice")
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(unlisted + "/")
        logs = f"{sentra.url}/api/agents/elsewhere/logs"
        posted = await call_from(page, "POST", logs, token, ["must not arrive"], {})
        patched = await call_from(page, "PATCH", f"{sentra.url}/api/agents/elsewhere", token, {"name": "x"}, {})
    finally:
        await context.close()
    assert "refused" in posted and "refused" in patched, (posted, patched)
    async with sentra.client("alice") as alice:
        # The pre-flight got no grant, so the browser never sent the POST: the agent was never created.
        assert (await alice.get("/api/agents/elsewhere")).status_code == 404
