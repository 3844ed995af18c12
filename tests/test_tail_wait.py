"""`sentra tail` started before its agent exists: it waits (unless --no-wait), against a real server child."""

from __future__ import annotations

import time

import httpx
import pytest
from processes import ServerProcess, TailProcess, cli, finish, post_line

pytestmark = pytest.mark.slow  # server and `sentra tail` children


def wait_until_streaming(server: ServerProcess, tail: TailProcess) -> None:
    """Wait (at most 15 s) until the server holds tail's stream open: tail is watching, not failed."""
    deadline = time.monotonic() + 15
    while httpx.get(server.url + "/healthz", timeout=5).json()["open_streams"] < 1:
        assert tail.process.poll() is None, tail.stderr
        assert time.monotonic() < deadline, "tail never opened its stream"
        time.sleep(0.05)


def test_tail_started_before_the_agent_exists_prints_its_lines_and_exits_0_when_it_completes(
    sentra: ServerProcess,
) -> None:
    tail = TailProcess(sentra, "not-yet")
    try:
        wait_until_streaming(sentra, tail)
        post_line(sentra, "not-yet", "the first line")
        tail.expect("the first line")
        post_line(sentra, "not-yet", "the second line", level="warning")
        tail.expect("the second line")
        finish(sentra, "not-yet", "completed")
        assert tail.wait() == 0
    finally:
        tail.stop()
    assert tail.printed() == [("INFO", "the first line"), ("WARNING", "the second line")]
    assert "not-yet completed" in tail.stderr


def test_tail_waiting_for_an_agent_another_user_creates_exits_2_without_its_lines(sentra: ServerProcess) -> None:
    tail = TailProcess(sentra, "taken")
    try:
        wait_until_streaming(sentra, tail)
        response = sentra.send("POST", "/api/agents/taken/logs", {"message": "bob's line"}, sub="bob")
        assert response.status_code == 200, response.text
        assert tail.wait() == 2
    finally:
        tail.stop()
    assert tail.seen == []
    assert tail.stderr == "sentra: agent taken was created by another user\n"


def test_tail_no_wait_on_a_missing_agent_exits_2_with_the_404(sentra: ServerProcess) -> None:
    result = cli(sentra, "tail", "--no-wait", "never-made")
    assert result.returncode == 2
    assert result.stdout == b""
    error = result.stderr.decode()
    assert error.count("\n") == 1 and error.startswith("sentra: ")
    assert "no agent 'never-made'" in error and "(HTTP 404)" in error


def test_tail_help_says_it_waits_and_names_no_wait(sentra: ServerProcess) -> None:
    result = cli(sentra, "tail", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.decode().split())
    assert "--no-wait" in text
    assert "An agent that does not exist yet is waited for" in text
