"""Nothing lost quietly on the agent side: a script that adds SentraHandler in two lines, run as a real child
against a real server child. Long messages read back whole; the run is finished by how the process ends;
lines a dead server never got are counted on stderr at exit."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import messages, server_size
from processes import ServerProcess

from sentra.client import MAX_LINE_SIZE, Client

pytestmark = pytest.mark.slow  # server and script children

EXIT_BOUND = 12.0  # seconds a script may take to exit with a dead server: the client's 5 s flush, and start-up


def run_script(
    server: ServerProcess, agent_id: str, body: str, *, url: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a Python script that adds the handler to the root logger in the README's two lines, then `body`."""
    script = server.directory / f"{agent_id}.py"
    head = "import logging, sys, threading\nfrom sentra.client import SentraHandler\n"
    head += f"logging.getLogger().addHandler(SentraHandler(agent_id={agent_id!r}))\n"
    head += "logging.getLogger().setLevel(logging.INFO)\n"
    script.write_text(head + textwrap.dedent(body))
    env = server.agent_env(**({"SENTRA_URL": url} if url else {}))
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def agent_record(server: ServerProcess, agent_id: str) -> tuple[str, str | None]:
    """(status, reason) of an agent."""
    record = server.get(f"/api/agents/{agent_id}")
    return record["status"], record.get("reason")


@pytest.mark.parametrize(
    "kind",
    ["ascii", "multibyte-at-the-cut"],
)
def test_a_300_kb_message_through_the_two_line_handler_reads_back_whole(sentra: ServerProcess, kind: str) -> None:
    if kind == "ascii":
        message = "".join(f"{n:07d} " for n in range(300_000 // 8))
    else:
        # Each cut at 256 KiB falls inside a 4-byte emoji, then inside 2- and 3-byte characters.
        message = "a" * (MAX_LINE_SIZE - 2) + "😀" * 1000 + "é€" * 20_000 + "z"
    assert len(message.encode()) >= 300_000
    agent_id = f"long-{kind}"
    Path(sentra.directory / f"{agent_id}.txt").write_text(message, encoding="utf-8")
    result = run_script(
        sentra,
        agent_id,
        f"""
        logging.info("before")
        logging.warning(open({str(sentra.directory / f"{agent_id}.txt")!r}, encoding="utf-8").read())
        logging.info("after")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = sentra.history(agent_id)
    first, *pieces, last = lines
    assert (first["message"], last["message"]) == ("before", "after")
    assert len(pieces) >= 2
    assert "".join(piece["message"] for piece in pieces) == message
    assert [piece["seq"] for piece in pieces] == list(range(pieces[0]["seq"], pieces[0]["seq"] + len(pieces)))
    assert {(piece["level"], piece["source"], piece["ts"]) for piece in pieces} == {
        ("WARNING", "root", pieces[0]["ts"])
    }
    assert max(server_size(piece) for piece in pieces) <= MAX_LINE_SIZE


def test_pieces_of_a_long_message_with_fields_stay_together_while_other_threads_log(sentra: ServerProcess) -> None:
    agent = Client(sentra.url, sentra.token()).agent("long-fields")
    message = "ü" * 200_000  # 400,000 bytes
    stop = threading.Event()

    def chatter() -> None:
        for number in range(2000):
            if stop.is_set():
                return
            agent.info(f"chatter {number}")
            time.sleep(0.0005)

    thread = threading.Thread(target=chatter)
    thread.start()
    time.sleep(0.05)
    agent.log(message, "ERROR", source="page", url="https://example.com/", step=4, note="x" * 1000)
    time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert agent.flush(30)
    agent.close()
    lines = sentra.history("long-fields")
    pieces = [line for line in lines if line["source"] == "page"]
    assert "".join(piece["message"] for piece in pieces) == message
    assert len(pieces) == 2
    assert pieces[1]["seq"] == pieces[0]["seq"] + 1
    assert all(piece["fields"] == {"url": "https://example.com/", "step": 4, "note": "x" * 1000} for piece in pieces)
    assert all(server_size(piece) <= MAX_LINE_SIZE for piece in pieces)


def test_a_message_larger_than_a_request_may_be_still_reads_back_whole(tmp_path: Path) -> None:
    server = ServerProcess.in_folder(tmp_path, limits={"max_body_size": "200KiB", "max_line_size": "64KiB"})
    server.start()
    try:
        agent = Client(server.url, server.token(), max_line_size=64 * 1024).agent("huge")
        message = "".join(f"line {n} ✓\n" for n in range(60_000))  # 720 KB: pieces for 4 requests at least
        agent.info(message)
        assert agent.flush(30)
        agent.close()
        assert agent.rejected == 0
        assert "".join(messages(server.history("huge"))) == message
    finally:
        server.terminate()


def test_a_normal_exit_or_sys_exit_0_completes_the_run(sentra: ServerProcess) -> None:
    result = run_script(sentra, "exit-normal", 'logging.info("done")\n')
    assert result.returncode == 0, result.stderr
    assert agent_record(sentra, "exit-normal") == ("completed", None)
    assert messages(sentra.history("exit-normal")) == ["done"]

    result = run_script(sentra, "exit-zero", 'logging.info("done")\nsys.exit(0)\n')
    assert result.returncode == 0, result.stderr
    assert agent_record(sentra, "exit-zero") == ("completed", None)


def test_an_uncaught_exception_fails_the_run_with_the_exception_and_its_traceback(sentra: ServerProcess) -> None:
    result = run_script(sentra, "exit-boom", 'logging.info("starting")\nraise ValueError("boom")\n')
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("ValueError: boom")  # Python still prints the traceback
    assert agent_record(sentra, "exit-boom") == ("failed", "ValueError: boom")
    first, last = sentra.history("exit-boom")
    assert first["message"] == "starting"
    assert (last["level"], last["source"]) == ("ERROR", "traceback")
    assert last["message"].startswith("Traceback (most recent call last):")
    assert last["message"].endswith("ValueError: boom")


def test_sys_exit_with_a_code_fails_the_run_naming_the_code(sentra: ServerProcess) -> None:
    result = run_script(sentra, "exit-three", 'logging.info("giving up")\nsys.exit(3)\n')
    assert result.returncode == 3
    assert agent_record(sentra, "exit-three") == ("failed", "exit code 3")

    result = run_script(sentra, "exit-text", 'sys.exit("no data")\n')
    assert result.returncode == 1
    assert agent_record(sentra, "exit-text") == ("failed", "exit code 1: no data")


def test_an_exception_in_a_thread_is_logged_and_the_process_end_decides(sentra: ServerProcess) -> None:
    body = """
    def work():
        raise KeyError("missing")
    worker = threading.Thread(target=work, name="worker")
    worker.start()
    worker.join()
    logging.info("main goes on")
    """
    result = run_script(sentra, "exit-thread", body)
    assert result.returncode == 0
    assert "Exception in thread worker" in result.stderr  # Python's own report is kept
    crash, after = sentra.history("exit-thread")
    assert (crash["level"], crash["source"]) == ("ERROR", "traceback")
    assert crash["message"].startswith("Exception in thread worker:\nTraceback (most recent call last):")
    assert crash["message"].endswith("KeyError: 'missing'")
    assert after["message"] == "main goes on"
    assert agent_record(sentra, "exit-thread") == ("completed", None)


def test_finish_run_false_leaves_the_status_alone(sentra: ServerProcess) -> None:
    script = sentra.directory / "no-finish.py"
    script.write_text(
        "import logging\nfrom sentra.client import SentraHandler\n"
        "logging.getLogger().addHandler(SentraHandler(agent_id='no-finish', finish_run=False))\n"
        "logging.warning('left running')\nraise ValueError('boom')\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], env=sentra.agent_env(), capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert agent_record(sentra, "no-finish") == ("running", None)
    assert messages(sentra.history("no-finish")) == ["left running"]


@pytest.mark.parametrize(
    ("server", "why"),
    [("refusing", "Connection refused"), ("silent", "no answer in time")],
)
def test_a_dead_server_at_exit_gives_one_stderr_line_with_the_count_and_a_prompt_exit(
    sentra: ServerProcess, server: str, why: str
) -> None:
    # Held for the whole test, so no other process can take the port: bound only, it refuses connections;
    # listening but never accepting, it takes the request and never answers.
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        if server == "silent":
            dead.listen(16)
        url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        started = time.monotonic()
        result = run_script(
            sentra, f"dead-{server}", 'for n in range(12):\n    logging.info("line %d", n)\n', url=url, timeout=60
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert elapsed < EXIT_BOUND, f"exit took {elapsed:.1f} s"
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (
        f"sentra: 12 lines for agent dead-{server} could not be delivered to {url}: {why}; "
        "the run was not marked completed\n"
    )
    assert sentra.token() not in result.stderr


def test_a_refused_line_is_counted_at_exit_too(sentra: ServerProcess) -> None:
    # Fields alone above the line limit: no split can help, and the server refuses the line.
    body = 'logging.info("fine")\nlogging.info("huge", extra={"blob": "x" * 300_000})\n'
    result = run_script(sentra, "refused-at-exit", body)
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"sentra: 1 line for agent refused-at-exit could not be delivered to {sentra.url}")
    assert "above the limit of 262144 (HTTP 400)" in result.stderr
    assert messages(sentra.history("refused-at-exit")) == ["fine"]
    assert agent_record(sentra, "refused-at-exit") == ("completed", None)
