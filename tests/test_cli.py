"""The agent-side `sentra` commands (run, tail, send, agents) run as subprocesses against a real server child."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import messages
from processes import ServerProcess, TailProcess, cli, finish, free_port, post_line

from sentra.cli import main

pytestmark = pytest.mark.slow  # server and `sentra` command children


def test_run_passes_output_through_records_both_sources_fails_and_exits_3(sentra: ServerProcess) -> None:
    result = cli(sentra, "run", "--agent", "run-fail", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert b"err\n" in result.stderr and b"run-fail" in result.stderr
    lines = sentra.history("run-fail")
    assert sorted((line["source"], line["message"]) for line in lines) == [("stderr", "err"), ("stdout", "out")]
    record = sentra.get("/api/agents/run-fail")
    assert (record["status"], record["reason"]) == ("failed", "exit code 3")


def test_run_completes_on_exit_0_keeping_colour_codes_name_and_labels(sentra: ServerProcess) -> None:
    script = "printf '\\033[31mred\\033[0m\\n'; printf 'unbuffered=%s' \"$PYTHONUNBUFFERED\""
    result = cli(sentra, "run", "--agent", "run-ok", "--name", "build", "--label", "team=ml", "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"\x1b[31mred\x1b[0m\nunbuffered=1"
    assert messages(sentra.history("run-ok")) == ["\x1b[31mred\x1b[0m", "unbuffered=1"]
    record = sentra.get("/api/agents/run-ok")
    assert (record["status"], record["name"], record["labels"]) == ("completed", "build", {"team": "ml"})


def test_run_of_a_missing_command_exits_127_and_fails_the_agent(sentra: ServerProcess) -> None:
    result = cli(sentra, "run", "--agent", "run-missing", "--", "/nonexistent/command")
    assert result.returncode == 127
    assert b"cannot run /nonexistent/command" in result.stderr and b"Traceback" not in result.stderr
    assert sentra.get("/api/agents/run-missing")["status"] == "failed"


def test_run_with_the_server_unreachable_still_runs_the_command_and_keeps_its_code(
    sentra: ServerProcess,
) -> None:
    env = sentra.agent_env(SENTRA_URL=f"http://127.0.0.1:{free_port()}")
    result = cli(sentra, "run", "--", "sh", "-c", "echo hi; exit 4", env=env)
    assert result.returncode == 4
    assert result.stdout == b"hi\n"
    assert result.stderr.count(b"cannot reach Sentra") == 1
    assert b"Traceback" not in result.stderr


def test_run_without_a_command_is_a_one_line_error(sentra: ServerProcess) -> None:
    result = cli(sentra, "run", "--agent", "nothing")
    assert result.returncode == 2
    assert result.stderr.decode().startswith("sentra: name the command to run")


def test_tail_prints_lines_as_they_are_sent_and_exits_1_when_the_agent_fails(sentra: ServerProcess) -> None:
    post_line(sentra, "tail-live", "first")
    tail = TailProcess(sentra, "tail-live")
    try:
        tail.expect("first")
        post_line(sentra, "tail-live", "second", level="error", source="tool")
        tail.expect("second")
        finish(sentra, "tail-live", "failed", "gave up")
        assert tail.wait() == 1
    finally:
        tail.stop()
    assert tail.printed() == [("INFO", "first"), ("ERROR", "tool second")]
    assert "tail-live failed: gave up" in tail.stderr


def test_tail_resumes_across_a_server_restart_without_gaps_or_repeats(tmp_path: Path) -> None:
    server = ServerProcess.in_folder(tmp_path)
    server.start()
    tail: TailProcess | None = None
    try:
        post_line(server, "tail-restart", "one")
        post_line(server, "tail-restart", "two")
        tail = TailProcess(server, "tail-restart")
        tail.expect("two")
        server.terminate()
        server.start()
        post_line(server, "tail-restart", "three")
        post_line(server, "tail-restart", "four")
        tail.expect("four")
        finish(server, "tail-restart", "completed")
        assert tail.wait() == 0
        assert [rest for _level, rest in tail.printed()] == ["one", "two", "three", "four"]
        assert "reconnecting" in tail.stderr
    finally:
        if tail is not None:
            tail.stop()
        server.terminate()


def test_tail_of_a_finished_agent_filters_and_exits_by_its_status(sentra: ServerProcess) -> None:
    post_line(sentra, "tail-done", "alpha")
    post_line(sentra, "tail-done", "beta", level="warning")
    post_line(sentra, "tail-done", "gamma beta", level="error")
    finish(sentra, "tail-done", "completed")

    def tail(*args: str) -> list[str]:
        result = cli(sentra, "tail", "tail-done", *args)
        assert result.returncode == 0, result.stderr
        return [line.split(None, 2)[2] for line in result.stdout.decode().splitlines()]

    assert tail() == ["alpha", "beta", "gamma beta"]
    assert tail("--level", "warning") == ["beta", "gamma beta"]
    assert tail("-q", "GAMMA") == ["gamma beta"]
    assert tail("--tail", "1") == ["gamma beta"]
    assert tail("--after", "1") == ["beta", "gamma beta"]
    assert tail("--after", "3") == []  # nothing left: the server answers 204 and the status decides


def test_send_sends_one_line_or_each_line_of_stdin(sentra: ServerProcess) -> None:
    result = cli(sentra, "send", "send-1", "hello", "world")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    result = cli(sentra, "send", "send-1", "--level", "warning", "-", stdin=b"a\nb\r\nc")
    assert (result.returncode, result.stderr) == (0, b"")
    lines = sentra.history("send-1")
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "hello world"),
        ("WARNING", "a"),
        ("WARNING", "b"),
        ("WARNING", "c"),
    ]


def test_agents_lists_only_the_callers_agents_with_status_and_line_count(sentra: ServerProcess) -> None:
    post_line(sentra, "list-done", "x")
    post_line(sentra, "list-done", "y")
    finish(sentra, "list-done", "completed")
    assert sentra.send("POST", "/api/agents", {"id": "list-ml", "labels": {"suite": "agents-table"}}).status_code == 201
    assert sentra.send("POST", "/api/agents", {"id": "list-bob"}, sub="bob").status_code == 201

    def table(*args: str) -> dict[str, list[str]]:
        result = cli(sentra, "agents", *args)
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.decode().splitlines()
        assert header.split() == ["ID", "NAME", "STATUS", "LINES", "UPDATED"]
        return {row.split()[0]: row.split() for row in rows}

    everything = table()
    assert everything["list-done"][1:3] == ["completed", "2"]
    assert everything["list-ml"][1:3] == ["running", "0"]
    assert "list-bob" not in everything
    assert "list-done" in table("--status", "completed") and "list-ml" not in table("--status", "completed")
    assert list(table("--label", "suite=agents-table")) == ["list-ml"]


@pytest.mark.parametrize("args", [["agents"], ["send", "err-agent", "hi"], ["tail", "err-agent"]])
def test_a_bad_token_is_a_one_line_error(sentra: ServerProcess, args: list[str]) -> None:
    result = cli(sentra, *args, env=sentra.agent_env(SENTRA_TOKEN="not-a-token"))
    assert result.returncode == 2
    error = result.stderr.decode()
    assert error.count("\n") == 1 and error.startswith("sentra: ")
    assert "(HTTP 401)" in error and "SENTRA_TOKEN" in error


@pytest.mark.parametrize("args", [["agents"], ["send", "err-agent", "hi"], ["tail", "err-agent"]])
def test_an_unreachable_server_is_a_one_line_error(sentra: ServerProcess, args: list[str]) -> None:
    result = cli(sentra, *args, env=sentra.agent_env(SENTRA_URL=f"http://127.0.0.1:{free_port()}"))
    assert result.returncode == 2
    error = result.stderr.decode()
    assert error.count("\n") == 1
    assert error.startswith("sentra: cannot reach Sentra at http://127.0.0.1:")


@pytest.mark.parametrize("command", ["run", "tail", "send", "agents"])
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith(f"usage: sentra {command}")
    assert "--url" in help_text and "--token" in help_text
