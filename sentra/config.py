"""Sentra's settings: one declarative table that drives sentra.toml, the command line and the README."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type; the message is one line for the operator."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "kb": 1000,
    "mib": 1024**2,
    "mb": 1000**2,
    "gib": 1024**3,
    "gb": 1000**3,
}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as "15s", "5m", "24h", "30d" or "250ms"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 15s, 5m, 24h or 30d")
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 15s, 5m, 24h or 30d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string such as "8MiB", "256KiB" or "1GB"."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256KiB or 8MiB")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]i?[bB]|[bB])?\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size such as 256KiB or 8MiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _parse_str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{value!r} is not a list of strings")
    return list(value)


@dataclass(frozen=True)
class Setting:
    """One setting: its dotted name, how to parse it, its default and one line of help."""

    name: str
    kind: str
    default: Any
    help: str

    @property
    def parse(self) -> Callable[[Any], Any]:
        """The parser that turns a TOML or command-line value into this setting's type."""
        return _PARSERS[self.kind]


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": _parse_int,
    "str": _parse_str,
    "bool": _parse_bool,
    "duration": parse_duration,
    "size": parse_size,
    "list": _parse_str_list,
}

SETTINGS: tuple[Setting, ...] = (
    Setting("server.host", "str", "127.0.0.1", "Address to listen on; 0.0.0.0 exposes Sentra to the network."),
    Setting("server.port", "int", 8765, "TCP port to listen on; 0 picks a free one."),
    Setting("server.public_url", "str", "", "URL printed at start-up and used in links; empty: http://host:port."),
    Setting(
        "server.access_log",
        "bool",
        True,
        "Log one line per HTTP request (tokens in URLs masked), written in batches within 0.5 s, warnings at once.",
    ),
    Setting("server.cors_origins", "list", [], "Origins allowed to call the API from a browser; empty: CORS off."),
    Setting(
        "server.header_timeout",
        "duration",
        "30s",
        "Longest wait for a request's headers, also between requests on a kept-alive connection.",
    ),
    Setting("server.body_timeout", "duration", "120s", "Longest time to receive one request body."),
    Setting(
        "server.event_loop",
        "str",
        "auto",
        "Event loop: uvloop (less CPU per request and per stream write), asyncio, or auto: uvloop when installed.",
    ),
    Setting(
        "server.return_memory_after",
        "int",
        1000,
        "After this many connections close (at least as many as stay open), collect garbage and hand freed memory"
        " back to the system; 0: never.",
    ),
    Setting(
        "server.metrics_allow",
        "list",
        ["127.0.0.1", "::1"],
        "Addresses that may read /metrics without an admin token.",
    ),
    Setting(
        "storage.url",
        "str",
        "",
        "sqlite:///path.db, or postgresql://user@host/db to share storage between processes; empty: storage.db.",
    ),
    Setting("storage.db", "str", "sentra.db", "Path of the SQLite database file (created if missing)."),
    Setting(
        "storage.synchronous",
        "str",
        "NORMAL",
        "SQLite synchronous mode: NORMAL survives a crash of Sentra, FULL also a power cut.",
    ),
    Setting("storage.commit_max_lines", "int", 20000, "Most lines written in one group commit."),
    Setting(
        "search.index",
        "bool",
        True,
        "Keep a word index of every line, written beside the commits, for GET /api/search and fast `q` filters;"
        " false: no index (/api/search answers 503, `q` reads every line of the agent).",
    ),
    Setting(
        "bus.url",
        "str",
        "memory://",
        "memory:// (one process), or redis://host:6379/0 to fan lines out between processes.",
    ),
    Setting("bus.prefix", "str", "sentra", "Prefix of Sentra's Redis channels and keys (one per deployment)."),
    Setting("bridge.redis_url", "str", "", "Redis whose channels to ingest from (seed 001's agents); empty: off."),
    Setting(
        "bridge.channel_pattern",
        "str",
        "browser_use_logs:*",
        "Channel pattern; each message is a line of the agent named by the part after the last ':'.",
    ),
    Setting(
        "bridge.owner",
        "str",
        "",
        "User who owns the agents the bridge creates; empty: the user of the token Sentra prints at start-up.",
    ),
    Setting(
        "auth.mode",
        "str",
        "jwt",
        "jwt: every request needs a token; none: no auth, loopback only, owner 'local'.",
    ),
    Setting(
        "auth.jwt_secret",
        "str",
        "",
        "HS256 secret; empty: generated on first start into <db>.secret (mode 0600).",
    ),
    Setting(
        "auth.algorithm",
        "str",
        "HS256",
        "JWT algorithm: HS256, or RS256/ES256 with auth.jwks_url or auth.public_key_file.",
    ),
    Setting("auth.public_key_file", "str", "", "PEM public key of your identity provider for RS256/ES256 tokens."),
    Setting(
        "auth.jwks_url",
        "str",
        "",
        "JWKS URL of your identity provider (OIDC) for RS256/ES256 tokens signed by its rotating keys.",
    ),
    Setting("auth.subject_claim", "str", "sub", "Claim that names the user who owns agents."),
    Setting("auth.audience", "str", "", "Required 'aud' claim; empty: not checked."),
    Setting("auth.ticket_ttl", "duration", "60s", "Lifetime of a stream ticket from POST /api/stream-tickets."),
    Setting("auth.max_share_ttl", "duration", "30d", "Longest lifetime of a share link (POST /api/agents/{id}/share)."),
    Setting("auth.cookie_name", "str", "sentra_token", "Cookie that carries the token for the browser viewer."),
    Setting("limits.max_body_size", "size", "8MiB", "Largest ingest request body (413 above it)."),
    Setting("limits.max_line_size", "size", "256KiB", "Largest single line, message and fields (400 above it)."),
    Setting("limits.max_lines_per_request", "int", 10000, "Most lines in one ingest request (413 above it)."),
    Setting(
        "limits.max_attachment_size",
        "size",
        "10MiB",
        "Largest attachment: an uploaded file, or an image sent as a data URL in a line's fields (413 above it).",
    ),
    Setting("limits.max_streams_per_user", "int", 1000, "Most open streams per user (429 above it)."),
    Setting(
        "limits.ingest_rate",
        "int",
        0,
        "Lines per second per token, with a burst of one second's worth; 0: no limit.",
    ),
    Setting(
        "limits.subscriber_buffer",
        "int",
        10000,
        "Lines waiting for one slow subscriber before its stream is cut.",
    ),
    Setting("streams.heartbeat", "duration", "15s", "Interval of the keep-alive comment on idle streams."),
    Setting("streams.retry", "duration", "2s", "Reconnect delay hinted to EventSource clients with `retry:`."),
    Setting(
        "agents.timeout",
        "duration",
        "0s",
        "A running agent silent this long is marked failed (reason timeout); 0: never.",
    ),
    Setting("retention.max_lines_per_agent", "int", 0, "Keep only the newest N lines of each agent; 0: keep all."),
    Setting("retention.max_age", "duration", "0s", "Delete finished agents older than this; 0: keep forever."),
    Setting("retention.interval", "duration", "60s", "How often retention and agent timeouts are enforced."),
    Setting("retention.idempotency_ttl", "duration", "24h", "How long an Idempotency-Key answer is kept."),
    Setting(
        "webhooks.allowed_targets",
        "list",
        [],
        "Hosts, addresses or CIDRs webhooks may be sent to besides public addresses (e.g. a receiver on your network).",
    ),
    Setting(
        "webhooks.give_up_after",
        "duration",
        "3d",
        "A webhook message not delivered this long after its event is given up (retries back off to hourly).",
    ),
    Setting(
        "webhooks.match_window",
        "duration",
        "60s",
        "lines.matched: at most one delivery per agent and webhook in this window (later matches are counted in).",
    ),
    Setting("webhooks.failing_after", "duration", "24h", "A webhook whose deliveries fail this long shows as failing."),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


@dataclass
class Config:
    """Parsed settings, read as `config["limits.max_body_size"]` or through the typed properties."""

    values: dict[str, Any] = field(default_factory=lambda: {s.name: s.parse(s.default) for s in SETTINGS})
    source: str = "defaults"

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with the given dotted settings replaced (parsed and checked)."""
        values = dict(self.values)
        for name, raw in overrides.items():
            values[name] = _checked(name, raw, self.source)
        return Config(values, self.source)

    @property
    def db_path(self) -> Path:
        """The SQLite database file: the path of a sqlite:/// storage.url, else storage.db."""
        url = self.values["storage.url"]
        if url.startswith("sqlite://"):
            # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy spells them.
            return Path(url[len("sqlite:///") :])
        return Path(self.values["storage.db"])

    @property
    def shared_storage(self) -> bool:
        """True when storage.url names PostgreSQL, which several processes share."""
        return bool(self.values["storage.url"].startswith(("postgresql://", "postgres://")))

    @property
    def auth_enabled(self) -> bool:
        """False when auth.mode is "none"."""
        return bool(self.values["auth.mode"] != "none")


def missing_extra(setting: str, error: ImportError) -> ConfigError:
    """The one-line error for a setting whose engine needs the `scale` extra, which is not installed."""
    package = (error.name or "asyncpg or redis").split(".")[0]
    return ConfigError(f"{setting} needs the Python package {package}: pip install 'sentra[scale]'")


def _checked(name: str, raw: Any, source: str) -> Any:
    setting = SETTINGS_BY_NAME.get(name)
    if setting is None:
        raise ConfigError(f"{source}: unknown setting {name!r}")
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: {name}: {exc}") from None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and f"{name}" not in SETTINGS_BY_NAME:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file (if any), then overrides; raises ConfigError with one clear line."""
    config = Config()
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                table = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        config = Config(config.values, source).with_overrides(_flatten(table))
    config = config.with_overrides(dict(overrides or {}))
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if config["auth.mode"] not in ("jwt", "none"):
        raise ConfigError(f"{config.source}: auth.mode must be 'jwt' or 'none', not {config['auth.mode']!r}")
    if config["auth.algorithm"] not in ("HS256", "HS384", "HS512", "RS256", "ES256"):
        raise ConfigError(f"{config.source}: auth.algorithm must be HS256, HS384, HS512, RS256 or ES256")
    _validate_provider_keys(config)
    if config["server.event_loop"] not in ("auto", "asyncio", "uvloop"):
        raise ConfigError(
            f"{config.source}: server.event_loop must be 'auto', 'asyncio' or 'uvloop',"
            f" not {config['server.event_loop']!r}"
        )
    if config["storage.synchronous"].upper() not in ("NORMAL", "FULL"):
        raise ConfigError(f"{config.source}: storage.synchronous must be NORMAL or FULL")
    url = config["storage.url"]
    if url and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(f"{config.source}: storage.url must start with sqlite:/// or postgresql://")
    if not config["bus.url"].startswith(("memory://", "redis://", "rediss://", "unix://")):
        raise ConfigError(f"{config.source}: bus.url must be memory:// or redis://host:port/db")
    if config["bus.url"] != "memory://" and not config.shared_storage:
        raise ConfigError(
            f"{config.source}: bus.url = {config['bus.url']} needs storage.url = postgresql://…: "
            "processes that fan out to each other must share their storage"
        )
    hs_key_generated = config["auth.algorithm"][:2] == "HS" and not config["auth.jwt_secret"]
    if config.shared_storage and config.auth_enabled and hs_key_generated:
        raise ConfigError(
            f"{config.source}: with storage.url = postgresql://… every process must verify the same tokens: "
            "set auth.jwt_secret (the same in every process)"
        )
    if not 0 <= config["server.port"] <= 65535:
        raise ConfigError(f"{config.source}: server.port must be between 0 and 65535")
    if config["server.return_memory_after"] < 0:
        raise ConfigError(f"{config.source}: server.return_memory_after must be 0 (never) or a number of connections")


def _validate_provider_keys(config: Config) -> None:
    """RS256/ES256 tokens are checked against exactly one source of the identity provider's keys."""
    algorithm, url, pem = config["auth.algorithm"], config["auth.jwks_url"], config["auth.public_key_file"]
    if algorithm[:2] == "HS":
        if url:
            raise ConfigError(
                f"{config.source}: auth.jwks_url is for tokens an identity provider signs: set auth.algorithm to"
                f" the one its keys use, RS256 or ES256 (it is {algorithm})"
            )
        return
    if not url and not pem:
        raise ConfigError(
            f"{config.source}: auth.algorithm {algorithm} needs the identity provider's keys: set auth.jwks_url"
            " (its JWKS, e.g. https://idp.example/.well-known/jwks.json) or auth.public_key_file (a PEM file)"
        )
    if url and pem:
        raise ConfigError(f"{config.source}: set auth.jwks_url or auth.public_key_file, not both")
    if url and not url.lower().startswith(("https://", "http://")):
        raise ConfigError(f"{config.source}: auth.jwks_url must be an https:// (or http://) URL, not {url!r}")


def settings_markdown() -> str:
    """The config reference as a Markdown table (kept in the README; a test compares them)."""
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = setting.default
        shown = "true" if default is True else "false" if default is False else repr(default).replace("'", '"')
        rows.append(f"| `{setting.name}` | {setting.kind} | `{shown}` | {setting.help} |")
    return "\n".join(rows)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def example_toml() -> str:
    """The documented example config (sentra.toml): every setting, commented, at its default."""
    out = [
        "# Sentra configuration. Every setting is shown at its default; uncomment and change what you need.",
        '# Durations take s, m, h, d or ms ("15s", "24h"); sizes take KiB, MiB, GiB ("8MiB").',
        "# Start with: python server.py --config sentra.toml   (or: sentra serve --config sentra.toml)",
    ]
    section = ""
    for setting in SETTINGS:
        head, key = setting.name.split(".", 1)
        if head != section:
            section = head
            out += ["", f"[{section}]"]
        out.append(f"# {setting.help}")
        out.append(f"# {key} = {_toml_value(setting.default)}")
    return "\n".join(out) + "\n"
