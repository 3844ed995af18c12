"""Attachments from the Python client against a real `python server.py` child: agent.attach() uploads a file or
bytes after the lines logged before it, and SentraHandler sends an image in `extra` with its line."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from processes import ServerProcess
from test_attachments import png

from sentra.client import Client, SentraError, SentraHandler

pytestmark = pytest.mark.slow  # a server child


def fetch(sentra: ServerProcess, url: str) -> httpx.Response:
    """GET an attachment's url as alice."""
    return httpx.get(sentra.url + url, headers={"Authorization": f"Bearer {sentra.token()}"}, timeout=10)


def test_attach_uploads_a_file_or_bytes_after_the_lines_before_it(sentra: ServerProcess, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_bytes(b"<h1>done</h1>")
    agent = Client(sentra.url, sentra.token()).agent("attaching", name="browser run")
    agent.info("opened the page")
    shot = agent.attach(png(), name="step-1.png", message="after the search")
    page = agent.attach(report)
    raw = agent.attach(b"\x00\x01binary")
    agent.info("done")
    assert agent.flush(10)
    agent.close()
    assert (shot["name"], shot["content_type"], shot["seq"]) == ("step-1.png", "image/png", 2)
    assert (page["name"], page["content_type"]) == ("report.html", "text/html")
    assert (raw["name"], raw["content_type"]) == ("attachment", "application/octet-stream")
    lines = sentra.history("attaching")
    assert [line["message"] for line in lines] == [
        "opened the page",
        "after the search",
        "attachment report.html",
        "attachment attachment",
        "done",
    ]
    assert lines[1]["fields"]["attachment"]["id"] == shot["id"]
    assert fetch(sentra, shot["url"]).content == png()
    assert fetch(sentra, page["url"]).content == b"<h1>done</h1>"
    assert sentra.get("/api/agents/attaching")["name"] == "browser run"


def test_attach_says_why_a_file_was_not_stored(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token("bob")).agent("attaching-bob")
    agent.info("mine")
    assert agent.flush(10)
    intruder = Client(sentra.url, sentra.token("mallory")).agent("attaching-bob", create=False)
    with pytest.raises(SentraError) as refused:
        intruder.attach(b"x", name="x.txt")
    assert refused.value.status == 403
    intruder.close()
    agent.close()


def test_handler_sends_a_screenshot_in_extra_as_an_attachment_of_its_line(sentra: ServerProcess) -> None:
    client = Client(sentra.url, sentra.token())
    handler = SentraHandler(client=client, agent_id="handled-shots", finish_run=False)
    logger = logging.getLogger("test_attachments_client.handler")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    image = png(16, 9)
    try:
        logger.info("after clicking Search", extra={"screenshot": image, "url": "https://example.com"})
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    (line,) = sentra.history("handled-shots")
    assert line["message"] == "after clicking Search" and line["fields"]["url"] == "https://example.com"
    record = line["fields"]["screenshot"]
    assert (record["name"], record["content_type"], record["size"]) == ("screenshot", "image/png", len(image))
    assert fetch(sentra, record["url"]).content == image
