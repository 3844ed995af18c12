"""The test command stays reproducible: the README and CI run the same command, on the pinned toolchain."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version

from processes import ROOT


def canonical(name: str) -> str:
    """A distribution name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """test-constraints.txt as {name: exact version}."""
    found: dict[str, str] = {}
    for line in (ROOT / "test-constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"test-constraints.txt pins exact versions only, not {line!r}"
            found[canonical(name)] = pinned
    return found


def requirement_names(*groups: str) -> list[str]:
    """The distributions named by the runtime dependencies (group "") or by these extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = []
    for group in groups:
        requirements = project["dependencies"] if group == "" else project["optional-dependencies"][group]
        for requirement in requirements:
            name = canonical(re.split(r"[\[<>=;!~ ]", requirement, maxsplit=1)[0])
            if name != "sentra":
                names.append(name)
    return names


def test_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Test it \(the same command CI runs\):\n\n```sh\n(.+)\n```", readme)
    assert block is not None, "the README lost its test command"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    as_ci_says = ci.replace("python3 -m pip install --quiet", "pip install").replace("python3 -m", "python -m")
    assert as_ci_says == block[1]
    assert "-c test-constraints.txt" in block[1]


def test_every_dependency_of_the_test_run_is_pinned_exactly() -> None:
    pinned = pins()
    missing = [name for name in requirement_names("", "scale", "test") if name not in pinned]
    assert not missing, f"not pinned in test-constraints.txt: {missing} (run scripts/pin_tests.sh)"


def test_the_suite_runs_on_the_pinned_toolchain() -> None:
    pinned = pins()
    wrong = {}
    for name in requirement_names("test"):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned[name]:
            wrong[name] = f"{installed} installed, {pinned[name]} pinned"
    assert not wrong, f"install with the README's test command: {wrong}"
