"""Steps in the Python client against a real `python server.py` child: `with agent.step(...)` tags the lines sent
inside it (by the agent and through SentraHandler), and a block that raises leaves a failed step line."""

from __future__ import annotations

import asyncio
import logging
import threading

import httpx
import pytest
from processes import ServerProcess

from sentra.client import Client, SentraHandler

pytestmark = pytest.mark.slow  # a server child


def test_lines_inside_a_step_carry_its_name_and_lines_after_it_do_not(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("stepped")
    agent.info("before")
    with agent.step("open google.com"):
        agent.info("navigating", url="https://google.com")
        with agent.step("type the query"):
            agent.debug("typing")
        agent.info("back in the outer step")
        agent.info("own step wins", step="explicit")
    agent.info("after")
    assert agent.flush(10)
    agent.close()
    steps = [(line["message"], (line.get("fields") or {}).get("step")) for line in sentra.history("stepped")]
    assert steps == [
        ("before", None),
        ("navigating", "open google.com"),
        ("typing", "type the query"),
        ("back in the outer step", "open google.com"),
        ("own step wins", "explicit"),
        ("after", None),
    ]
    fields = sentra.history("stepped")[1]["fields"]
    assert fields == {"url": "https://google.com", "step": "open google.com"}


def test_a_step_that_raises_sends_a_failed_line_and_the_exception_goes_on(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("failing-step")
    with pytest.raises(TimeoutError, match="no search box"), agent.step("search"):
        agent.info("looking for the box")
        raise TimeoutError("no search box")
    with agent.step("next"):
        agent.info("went on")
    assert agent.flush(10)
    agent.close()
    lines = sentra.history("failing-step")
    failed = lines[1]
    assert failed["level"] == "ERROR"
    assert failed["message"] == "step failed: TimeoutError: no search box"
    assert failed["fields"] == {"step": "search", "step_status": "failed"}
    assert [(line.get("fields") or {}).get("step_status") for line in lines] == [None, "failed", None]
    assert lines[2]["fields"] == {"step": "next"}


def test_logging_calls_inside_a_step_are_tagged_through_the_handler(sentra: ServerProcess) -> None:
    client = Client(sentra.url, sentra.token())
    handler = SentraHandler(client=client, agent_id="handled-steps", finish_run=False)
    logger = logging.getLogger("test_steps_client.handler")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        with handler.agent.step("log in"):
            logger.info("form filled", extra={"user": "ada"})
        logger.info("outside")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = sentra.history("handled-steps")
    assert [(line["message"], line.get("fields")) for line in lines] == [
        ("form filled", {"user": "ada", "step": "log in"}),
        ("outside", {}),
    ]


def test_a_thread_or_task_outside_the_block_is_not_in_the_step(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("step-context")
    started = threading.Event()
    release = threading.Event()

    def background() -> None:
        started.set()
        release.wait(5)
        agent.info("from another thread")

    # A thread started before the step has its own context: its lines are not the step's.
    worker = threading.Thread(target=background)
    worker.start()
    assert started.wait(5)
    with agent.step("main work"):
        release.set()
        worker.join(5)

        async def task_line() -> None:
            agent.info("from a task started inside")

        asyncio.run(task_line())
    assert agent.flush(10)
    agent.close()
    steps = {line["message"]: (line.get("fields") or {}).get("step") for line in sentra.history("step-context")}
    assert steps == {"from another thread": None, "from a task started inside": "main work"}


def test_a_file_uploaded_with_a_step_is_a_line_of_that_step(sentra: ServerProcess) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    answer = httpx.post(
        f"{sentra.url}/api/agents/attached-step/attachments",
        params={"name": "home.png", "message": "the home page", "step": "open the shop"},
        content=png,
        headers={"Authorization": f"Bearer {sentra.token()}", "Content-Type": "image/png"},
    )
    assert answer.status_code == 201, answer.text
    (line,) = sentra.history("attached-step")
    assert line["message"] == "the home page"
    assert line["fields"]["step"] == "open the shop"
    assert line["fields"]["attachment"]["name"] == "home.png"


def test_a_file_attached_inside_a_step_is_one_of_its_lines(sentra: ServerProcess) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    agent = Client(sentra.url, sentra.token()).agent("attach-in-step")
    with agent.step("open the shop"):
        agent.info("navigating")
        agent.attach(png, name="home.png", message="the home page")
    agent.attach(png, name="after.png")
    agent.close()
    lines = sentra.history("attach-in-step")
    assert [(line["message"], line["fields"].get("step")) for line in lines] == [
        ("navigating", "open the shop"),
        ("the home page", "open the shop"),
        ("attachment after.png", None),
    ]
