"""Settings: one table drives sentra.toml, --help and the README, and bad config stops start-up clearly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from processes import ROOT

from sentra.config import (
    SETTINGS,
    ConfigError,
    example_toml,
    load_config,
    parse_duration,
    parse_size,
    settings_markdown,
)


def test_readme_config_reference_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- settings:start -->\n(.*)\n<!-- settings:end -->", readme, re.S)
    assert section is not None, "README has no settings table"
    assert section.group(1) == settings_markdown()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in section.group(1)


def test_example_config_documents_every_key_and_loads() -> None:
    text = (ROOT / "sentra.toml").read_text()
    assert text == example_toml()
    for setting in SETTINGS:
        section, key = setting.name.split(".", 1)
        assert f"[{section}]" in text and f"# {key} = " in text
    # Uncommented, the example is a valid config equal to the defaults.
    uncommented = "\n".join(line[2:] if re.match(r"# \w+ = ", line) else line for line in text.splitlines())
    path = ROOT / "tests" / ".uncommented.toml"
    try:
        path.write_text(uncommented)
        assert load_config(path).values == load_config(None).values
    finally:
        path.unlink(missing_ok=True)


def test_serve_help_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sentra", "serve", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0
    for setting in SETTINGS:
        assert setting.name in result.stdout


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nprot = 1\n", "unknown setting 'server.prot'"),
        ("[server]\nport = 'eighty'\n", "server.port: 'eighty' is not an integer"),
        ("[streams]\nheartbeat = 'soon'\n", "streams.heartbeat: 'soon' is not a duration such as 15s, 5m, 24h or 30d"),
        ("[auth]\nmode = 'open'\n", "auth.mode must be 'jwt' or 'none', not 'open'"),
        ("[server]\nevent_loop = 'trio'\n", "server.event_loop must be 'auto', 'asyncio' or 'uvloop', not 'trio'"),
        (
            "[server]\nreturn_memory_after = -1\n",
            "server.return_memory_after must be 0 (never) or a number of connections",
        ),
        ("[auth]\nalgorithm = 'RS256'\n", "auth.algorithm RS256 needs the identity provider's keys"),
        ("[server\n", "not valid TOML"),
        ("[storage]\nurl = 'mysql://db/sentra'\n", "storage.url must start with sqlite:/// or postgresql://"),
        ("[bus]\nurl = 'nats://bus'\n", "bus.url must be memory:// or redis://host:port/db"),
        ("[bus]\nurl = 'redis://127.0.0.1:6379/0'\n", "processes that fan out to each other must share their storage"),
        (
            "[storage]\nurl = 'postgresql://sentra@db/sentra'\n",
            "every process must verify the same tokens: set auth.jwt_secret",
        ),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "sentra.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_durations_and_sizes_read_as_people_write_them() -> None:
    assert [parse_duration(v) for v in ("15s", "5m", "24h", "30d", "250ms", 3)] == [15, 300, 86400, 2592000, 0.25, 3]
    assert [parse_size(v) for v in ("8MiB", "256KiB", "1GB", 1024)] == [8 * 1024**2, 256 * 1024, 10**9, 1024]
