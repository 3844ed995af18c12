"""The wheel carries every package of Sentra: pyproject's explicit package list names each one the source has."""

from __future__ import annotations

import tomllib

from processes import ROOT


def test_every_sentra_package_is_in_the_wheels_package_list() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    in_source = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "sentra").rglob("__init__.py")}
    assert in_source - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
