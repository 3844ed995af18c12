"""`sentra run` reads each line's level from its prefix or the Python traceback it belongs to, and cuts an
over-long line as the client cuts a long message: unit tests of the reader, then `sentra run` as a child
against a real server child."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from conftest import messages
from processes import ServerProcess, cli

from sentra.cli.run import LineLevels
from sentra.client import MAX_LINE_SIZE


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("ERROR", "ERROR"),
        ("ERROR could not open the page", "ERROR"),
        ("ERROR: could not open the page", "ERROR"),
        ("WARNING: low disk", "WARNING"),
        ("WARN low disk", "WARNING"),
        ("[error] timeout", "ERROR"),
        ("[warn] slow", "WARNING"),
        ("[Warning] slow", "WARNING"),
        ("CRITICAL out of memory", "CRITICAL"),
        ("FATAL: no config", "CRITICAL"),
        ("DEBUG cache hit", "DEBUG"),
        ("INFO started", "INFO"),
        ("ERROR:root:msg", "ERROR"),
        ("WARNING:agent.planner:retrying", "WARNING"),
        ("2024-01-01 12:00:00,123 - name - ERROR - msg", "ERROR"),
        ("2024-01-01 12:00:00,123 - my-app.tools - WARNING - msg", "WARNING"),
        ("2024-01-01T12:00:00.5Z DEBUG msg", "DEBUG"),
        ("[2024-01-01 12:00:00] [error] msg", "ERROR"),
        ("12:00:00 CRITICAL msg", "CRITICAL"),
        ("error: could not compile `agent`", "ERROR"),
        ("warning: unused variable", "WARNING"),
        ("step 3 of 10", "INFO"),
        ("Errors: none", "INFO"),
        ("ERRORS 0", "INFO"),
        ("The ERROR was handled", "INFO"),
        ("", "INFO"),
    ],
)
def test_a_line_has_the_level_of_its_prefix(line: str, level: str) -> None:
    assert LineLevels().level(line) == level


def test_a_python_traceback_is_error_through_its_exception_line() -> None:
    output = [
        "working",
        "Traceback (most recent call last):",
        '  File "agent.py", line 3, in <module>',
        "    open_page()",
        "    ^^^^^^^^^^^",
        "KeyError: 'url'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "agent.py", line 5, in <module>',
        "ValueError: boom",
        "next run",
    ]
    reader = LineLevels()
    levels = [reader.level(line) for line in output]
    assert levels == ["INFO", *["ERROR"] * 5, "INFO", "ERROR", "INFO", *["ERROR"] * 3, "INFO"]


def test_an_exception_group_traceback_ends_at_the_first_unindented_line() -> None:
    output = [
        "  + Exception Group Traceback (most recent call last):",
        '  |   File "agent.py", line 1, in <module>',
        "  | ExceptionGroup: two (2 sub-exceptions)",
        "  +-+---------------- 1 ----------------",
        "    | ValueError: a",
        "    +------------------------------------",
        "done",
    ]
    reader = LineLevels()
    assert [reader.level(line) for line in output] == [*["ERROR"] * 6, "INFO"]


@pytest.mark.slow  # server and `sentra run` children
def test_run_files_lines_at_the_level_of_their_prefix_and_a_traceback_at_error(
    sentra: ServerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        "import logging, sys\n"
        "print('plain stdout')\n"
        "print('WARNING: stdout warns')\n"
        "print('plain stderr', file=sys.stderr)\n"
        "print('[error] bracketed', file=sys.stderr)\n"
        "logging.basicConfig()\n"
        "logging.error('from logging')\n"
        "logging.getLogger('tool').warning('careful')\n"
        "fmt = logging.Formatter('%(asctime)s - %(name)s - %(levelname)s - %(message)s')\n"
        "logging.getLogger().handlers[0].setFormatter(fmt)\n"
        "logging.getLogger('agent').critical('formatted')\n"
        "raise ValueError('boom')\n"
    )
    result = cli(sentra, "run", "--agent", "run-levels", "--", sys.executable, str(script))
    assert result.returncode == 1
    lines = sentra.history("run-levels")
    by_source = {
        source: [(line["level"], line["message"]) for line in lines if line["source"] == source]
        for source in ("stdout", "stderr")
    }
    assert by_source["stdout"] == [("INFO", "plain stdout"), ("WARNING", "WARNING: stdout warns")]
    stderr = by_source["stderr"]
    assert stderr[:4] == [
        ("INFO", "plain stderr"),
        ("ERROR", "[error] bracketed"),
        ("ERROR", "ERROR:root:from logging"),
        ("WARNING", "WARNING:tool:careful"),
    ]
    assert stderr[4][0] == "CRITICAL" and stderr[4][1].endswith(" - agent - CRITICAL - formatted")
    traceback = stderr[5:]
    assert traceback[0] == ("ERROR", "Traceback (most recent call last):")
    assert traceback[-1] == ("ERROR", "ValueError: boom")
    assert {level for level, _message in traceback} == {"ERROR"}
    assert sentra.get("/api/agents/run-levels")["status"] == "failed"


@pytest.mark.slow  # server and `sentra run` children
def test_run_cuts_an_over_long_line_between_characters_and_it_reads_back_whole(
    sentra: ServerProcess, tmp_path: Path
) -> None:
    long_line = "a" * (MAX_LINE_SIZE - 1) + "€" * 30_000 + "😀" * 50_000  # cuts inside a € and inside a 😀
    (tmp_path / "long.txt").write_text(long_line + "\nshort\n", encoding="utf-8")
    result = cli(sentra, "run", "--agent", "run-long", "--", "cat", str(tmp_path / "long.txt"))
    assert result.returncode == 0, result.stderr
    lines = sentra.history("run-long")
    *pieces, short = messages(lines)
    assert short == "short"
    assert len(pieces) >= 2
    assert "".join(pieces) == long_line
    assert max(len(piece.encode()) for piece in pieces) <= MAX_LINE_SIZE


@pytest.mark.slow  # server and `sentra run` children
def test_run_with_a_dead_server_says_in_one_line_how_many_lines_were_not_delivered(sentra: ServerProcess) -> None:
    with socket.socket() as dead:  # bound, not listening: refuses, and no other process can take the port
        dead.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        env = sentra.agent_env(SENTRA_URL=url)
        result = cli(sentra, "run", "--agent", "run-dead", "--", "sh", "-c", "echo one; echo two", env=env)
    assert result.returncode == 0
    report = [line for line in result.stderr.decode().splitlines() if "could not be delivered" in line]
    assert report == [
        f"sentra: 2 lines for agent run-dead could not be delivered to {url}: Connection refused; "
        "the run was not marked completed"
    ]
