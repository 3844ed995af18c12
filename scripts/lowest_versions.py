"""Prints test-constraints.txt with each runtime dependency pinned to the lowest version pyproject.toml allows.

`scripts/check_lowest.sh` installs the test environment from it and runs the suite, so a lower bound that admits
a release Sentra cannot run on (tornado 6.4.0 lacks a helper Sentra imports) is found before a user finds it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lower_bounds() -> dict[str, str]:
    """Each runtime dependency (the default install and the `scale` extra) and its `>=` floor."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["scale"]
    floors: dict[str, str] = {}
    for requirement in requirements:
        found = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)", requirement)
        if found is None:
            sys.exit(f"no lower bound in {requirement!r}")
        floors[canonical(found[1])] = found[2]
    return floors


def canonical(name: str) -> str:
    """A distribution name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    """Write the constraints with the floors swapped in to stdout."""
    floors = lower_bounds()
    for line in (ROOT / "test-constraints.txt").read_text().splitlines():
        name = canonical(line.split("==", 1)[0]) if "==" in line else None
        if name in floors:
            print(f"{line.split('==', 1)[0]}=={floors.pop(name)}")
        else:
            print(line)
    for name, version in floors.items():
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
