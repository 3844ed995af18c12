"""`sentra run` and the Python client when a run is asked to stop: the command is interrupted within seconds even
while it prints nothing, the run fails with "stopped by <user>", and on_stop is called once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from processes import ServerProcess

from sentra.client import Client

pytestmark = pytest.mark.slow  # server and `sentra run` children


def wait_for(check: object, timeout: float, what: str) -> None:
    """Poll `check()` every 0.1 s until it is true, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def start_run(sentra: ServerProcess, agent_id: str, *command: str) -> subprocess.Popen[bytes]:
    """`python -m sentra run --agent ID -- COMMAND…` as alice, running in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "sentra", "run", "--agent", agent_id, "--", *command],
        env=sentra.agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=sentra.directory,
    )


def finish_run(run: subprocess.Popen[bytes], timeout: float) -> tuple[int, bytes]:
    """Wait for the `sentra run` child (killed if it outlives `timeout`); its exit code and stderr."""
    try:
        _out, err = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError(f"sentra run did not exit within {timeout} s") from None
    return run.returncode, err


def agent_exists(sentra: ServerProcess, agent_id: str) -> bool:
    """True once the agent is stored."""
    return any(agent["id"] == agent_id for agent in sentra.get("/api/agents")["agents"])


def test_a_silent_command_is_stopped_within_seconds_and_the_run_fails_stopped_by_alice(sentra: ServerProcess) -> None:
    run = start_run(sentra, "sleeper", "sleep", "60")
    try:
        wait_for(lambda: agent_exists(sentra, "sleeper"), 10, "the agent's creation")
        time.sleep(1.5)  # the command has printed nothing and the client is idle
        asked = time.monotonic()
        assert sentra.send("POST", "/api/agents/sleeper/stop", None).status_code == 202
    finally:
        code, stderr = finish_run(run, 10)
    took = time.monotonic() - asked
    assert took < 5.0, f"sentra run took {took:.1f} s to stop"
    assert code != 0
    assert b"stop requested by alice" in stderr
    record = sentra.get("/api/agents/sleeper")
    assert (record["status"], record["reason"], record["stop_requested_by"]) == ("failed", "stopped by alice", "alice")
    assert "stop requested by alice: interrupting the command" in [
        line["message"] for line in sentra.history("sleeper")
    ]


def test_a_command_that_ignores_sigint_and_sigterm_is_killed(sentra: ServerProcess) -> None:
    script = "trap '' INT TERM; echo ready; while true; do sleep 0.1; done"
    run = start_run(sentra, "stubborn", "sh", "-c", script)
    try:
        wait_for(lambda: agent_exists(sentra, "stubborn"), 10, "the agent's creation")
        asked = time.monotonic()
        assert sentra.send("POST", "/api/agents/stubborn/stop", None).status_code == 202
    finally:
        code, _err = finish_run(run, 15)
    took = time.monotonic() - asked
    assert code == 128 + 9  # SIGKILL, after SIGINT and SIGTERM went unheeded
    assert took < 8.0
    assert sentra.get("/api/agents/stubborn")["reason"] == "stopped by alice"


def test_a_command_that_finishes_cleanly_on_sigint_still_exits_non_zero(sentra: ServerProcess) -> None:
    script = "trap 'echo cleaning up; exit 0' INT; while true; do sleep 0.1; done"
    run = start_run(sentra, "tidy", "sh", "-c", script)
    try:
        wait_for(lambda: agent_exists(sentra, "tidy"), 10, "the agent's creation")
        sentra.send("POST", "/api/agents/tidy/stop", None)
    finally:
        code, _err = finish_run(run, 10)
    assert code == 130
    record = sentra.get("/api/agents/tidy")
    assert (record["status"], record["reason"]) == ("failed", "stopped by alice")
    assert "cleaning up" in [line["message"] for line in sentra.history("tidy")]


def test_on_stop_is_called_once_while_idle_and_stop_requested_is_set(sentra: ServerProcess) -> None:
    client = Client(sentra.url, sentra.token("alice"))
    agent = client.agent("callback-run")
    calls: list[str] = []
    called = threading.Event()

    def on_stop(by: str) -> None:
        calls.append(by)
        called.set()

    agent.on_stop = on_stop
    agent.info("started")
    assert agent.flush(10)
    assert not agent.stop_requested
    assert sentra.send("POST", "/api/agents/callback-run/stop", {}, sub="alice").status_code == 202
    assert called.wait(5), "on_stop was not called while the agent was idle"
    assert (agent.stop_requested, agent.stop_requested_by) == (True, "alice")
    agent.info("one more line, whose answer says it again")
    assert agent.flush(10)
    time.sleep(1.5)
    assert calls == ["alice"]
    agent.fail("stopped by alice")


def test_stop_requested_comes_with_the_next_ingest_answer_without_a_callback(sentra: ServerProcess) -> None:
    client = Client(sentra.url, sentra.token("alice"))
    agent = client.agent("answer-run")
    agent.info("first")
    assert agent.flush(10)
    sentra.send("POST", "/api/agents/answer-run/stop", {})
    assert not agent.stop_requested  # without on_stop nothing polls: the next answer tells
    agent.info("second")
    assert agent.flush(10)
    assert (agent.stop_requested, agent.stop_requested_by) == (True, "alice")
    # A callback set after the request had been seen is called at once.
    seen: list[str] = []
    agent.on_stop = seen.append
    assert seen == ["alice"]
    agent.complete()
