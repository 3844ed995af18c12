"""The `sentra` command: argument parsing and dispatch to one function per subcommand.

Importing it loads none of the server's dependencies (tornado, aiosqlite, jwt): the agent-side commands (run, tail,
send, agents, a module each) need only the vendorable client, and `serve` and `token` import the server side when
they run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from sentra import __version__
from sentra.cli import agents, run, send, tail
from sentra.cli.common import CliError
from sentra.config import SETTINGS, Config, ConfigError, load_config
from sentra.scopes import ALL_SCOPES


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """--config, --host, --port and --db, shared by every command that reads the server's config."""
    parser.add_argument("--config", metavar="PATH", help="sentra.toml to read (default: ./sentra.toml if present)")
    parser.add_argument("--host", help="address to listen on (server.host)")
    parser.add_argument("--port", type=int, help="port to listen on; 0 picks a free one (server.port)")
    parser.add_argument("--db", metavar="PATH", help="SQLite database file (storage.db)")


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults, then the config file, then the command-line flags."""
    overrides: dict[str, Any] = {}
    for flag, name in (("host", "server.host"), ("port", "server.port"), ("db", "storage.db")):
        if getattr(args, flag, None) is not None:
            overrides[name] = getattr(args, flag)
    path = getattr(args, "config", None)
    if path is None:
        from pathlib import Path

        path = "sentra.toml" if Path("sentra.toml").is_file() else None
    return load_config(path, overrides)


def _settings_epilog() -> str:
    lines = ["settings (in sentra.toml as [section] key = value):"]
    lines += [f"  {s.name:<32} {s.help}" for s in SETTINGS]
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server in the foreground until Ctrl-C or SIGTERM."""
    import asyncio

    from sentra.http.access_log import LOG_FORMAT, batch_access_log
    from sentra.serve import StartupError, loop_factory, serve, tune_gc
    from sentra.storage.sqlite_library import turn_off_memory_statistics

    # Before anything opens a database: it restarts the SQLite library.
    turn_off_memory_statistics()
    config = config_from_args(args)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if config["server.access_log"]:
        batch_access_log()
    tune_gc()
    try:
        with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
            runner.run(serve(config, own_gc=True))
    except StartupError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    """Print a new token for --sub."""
    from sentra.auth import TokenService, parse_ttl

    config = config_from_args(args)
    if not config.auth_enabled:
        raise CliError("auth.mode is none: this server needs no tokens")
    tokens = TokenService(config)
    scopes = [scope for item in args.scope or [] for scope in item.replace(",", " ").split()]
    try:
        print(tokens.create(args.sub, scopes or None, parse_ttl(args.ttl)))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Revoke a token by its jti (or the token itself); the server refuses it within a second."""
    import asyncio

    import jwt

    from sentra.storage.open import revoke_token

    jti = args.jti
    if jti.count(".") == 2:
        try:
            jti = jwt.decode(jti, options={"verify_signature": False}).get("jti") or ""
        except jwt.InvalidTokenError as exc:
            raise CliError(f"not a token: {exc}") from None
        if not jti:
            raise CliError("that token has no jti claim, so it cannot be revoked; rotate the secret instead")
    config = config_from_args(args)
    asyncio.run(revoke_token(config, jti))
    print(f"revoked {jti}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full `sentra` argument parser."""
    parser = argparse.ArgumentParser(prog="sentra", description="Sentra: live logs for AI agents.")
    parser.add_argument("--version", action="version", version=f"sentra {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve_parser = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the Sentra server.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_options(serve_parser)
    serve_parser.set_defaults(func=cmd_serve)

    token = commands.add_parser("token", help="create or revoke tokens", description="Create or revoke tokens.")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_commands.add_parser("create", help="print a new token", description="Print a new signed token.")
    create.add_argument("--sub", required=True, help="the user the token speaks for (owner of its agents)")
    create.add_argument(
        "--scope", action="append", help=f"scope(s): {', '.join(ALL_SCOPES)}; default: read+write own agents"
    )
    create.add_argument("--ttl", default="30d", help="lifetime such as 12h or 30d, or 'never' (default 30d)")
    add_server_options(create)
    create.set_defaults(func=cmd_token_create)
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token", description="Revoke a token by its jti (or paste the token)."
    )
    revoke.add_argument("jti", help="the token's jti claim, or the token itself")
    add_server_options(revoke)
    revoke.set_defaults(func=cmd_token_revoke)

    for module in (run, tail, send, agents):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sentra` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CliError) as exc:
        print(f"sentra: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main_serve(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python server.py`: the same as `sentra serve`."""
    return main(["serve", *(sys.argv[1:] if argv is None else argv)])
