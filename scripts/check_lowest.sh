#!/usr/bin/env bash
# Runs the test suite on the lowest release of each runtime dependency that pyproject.toml admits (the test
# toolchain stays at its pins). Arguments go to pytest, e.g. scripts/check_lowest.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
python3 scripts/lowest_versions.py > "$work/lowest.txt"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet -e '.[test]' -c "$work/lowest.txt"
"$work/venv/bin/python" -m pip list --format=freeze | grep -i -E '^(tornado|aiosqlite|pyjwt|prometheus.client|uvloop|asyncpg|redis)=='
status=0
# ruff and mypy are pinned tools checking Sentra's code, not its dependencies: their verdict on old releases'
# type stubs says nothing about whether Sentra runs on them.
"$work/venv/bin/python" -m pytest --deselect tests/test_code_quality.py "$@" || status=$?
rm -rf "$work"
exit "$status"
