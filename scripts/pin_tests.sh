#!/usr/bin/env bash
# Moves the test toolchain's pins forward: resolves `.[test]` in a new virtual environment with today's releases
# and writes every package it installed, at its exact version, to test-constraints.txt. Run it, then the test
# command; commit the file when the suite passes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e '.[test]'
{
  echo "# The exact versions the test command installs (pip install -e '.[test]' -c test-constraints.txt)."
  echo "# Sentra's own dependency ranges stay in pyproject.toml; this file only pins what the tests run on."
  echo "# Written by scripts/pin_tests.sh on $(date -u +%Y-%m-%d) with Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')."
  "$venv/bin/python" -m pip freeze --all --exclude-editable | grep -v -E '^(pip|wheel)=='
} > test-constraints.txt
rm -rf "$(dirname "$venv")"
echo "test-constraints.txt: $(grep -c '==' test-constraints.txt) pins"
