"""The code stays formatted, lint-free and type-checked: ruff and mypy run as part of the test suite."""

from __future__ import annotations

import subprocess
import sys

import pytest
from processes import ROOT

pytestmark = pytest.mark.slow  # ruff and mypy over the whole tree


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "format", "--check", "sentra", "tests", "server.py"],
        ["ruff", "check", "sentra", "tests", "server.py"],
        ["mypy", "sentra"],
    ],
    ids=["ruff-format", "ruff-check", "mypy"],
)
def test_code_passes(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
