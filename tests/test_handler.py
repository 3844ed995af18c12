"""SentraHandler against a real `python server.py` child: what a logging record becomes, no recursion,
and a script that adds the handler in two lines and exits."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import messages
from processes import ServerProcess

from sentra.client import SentraHandler

pytestmark = pytest.mark.slow  # server and script children


def test_record_becomes_a_line_with_level_logger_exception_and_extra(sentra: ServerProcess) -> None:
    handler = SentraHandler(sentra.url, sentra.token(), "handler-shape")
    logger = logging.getLogger("agent.planner")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("picked %s of %d", "plan B", 3, extra={"step": 7, "tool": "search"})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("step failed")
        logger.log(25, "custom level")
        logger.debug("detail")
    finally:
        logger.removeHandler(handler)
        handler.close()
    first, second, third, fourth = sentra.history("handler-shape")
    assert (first["level"], first["message"], first["source"]) == ("INFO", "picked plan B of 3", "agent.planner")
    assert first["fields"] == {"step": 7, "tool": "search"}
    assert second["level"] == "ERROR"
    assert second["message"].startswith("step failed\nTraceback (most recent call last):")
    assert second["message"].endswith("ZeroDivisionError: division by zero")
    assert (third["level"], third["message"]) == ("INFO", "custom level")
    assert (fourth["level"], fourth["message"]) == ("DEBUG", "detail")


def test_client_problems_logged_on_the_root_logger_do_not_feed_back(sentra: ServerProcess) -> None:
    # On the root logger the handler also sees the client's own "line refused" error record.
    handler = SentraHandler(sentra.url, sentra.token(), "handler-recursion")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("agent").warning("big", extra={"blob": "x" * 300_000})  # refused: above the line limit
        logging.getLogger("agent").warning("small")
        handler.flush()
    finally:
        root.removeHandler(handler)
        handler.close()
    assert handler.agent.rejected == 1
    assert messages(sentra.history("handler-recursion")) == ["small"]
    # The agent's account of the refused line, which it would otherwise print when the process exits.
    report = handler.agent.undelivered_report()
    assert report is not None and report.startswith("1 line for agent handler-recursion could not be delivered")
    assert "above the limit of 262144" in report
    assert handler.agent.undelivered_report() is None  # told once


def test_script_adds_the_handler_in_two_lines_and_its_lines_arrive_at_exit(
    sentra: ServerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging
            from sentra.client import SentraHandler
            logging.basicConfig(level=logging.INFO, handlers=[SentraHandler()])
            for step in range(50):
                logging.getLogger("agent").info("step %d", step)
            """
        )
    )
    env = sentra.agent_env(SENTRA_AGENT="handler-script")
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    lines = sentra.history("handler-script")
    assert messages(lines) == [f"step {step}" for step in range(50)]
    assert {line["source"] for line in lines} == {"agent"}
    assert sentra.get("/api/agents/handler-script")["status"] == "completed"  # finished at exit
