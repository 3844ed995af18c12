"""Entry point of sentra.pyz: `sentra.pyz COMMAND …` runs that `sentra` command, anything else serves.

So `python3 sentra.pyz --port 9000` starts the server as `python server.py --port 9000` does, and
`python3 sentra.pyz run -- make test` is `sentra run -- make test`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sentra.cli import build_parser, main

# Asked of the whole program rather than of the server: the list of commands, and the version.
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")


def command_names(parser: argparse.ArgumentParser) -> set[str]:
    """The subcommands of the `sentra` parser."""
    return {
        name for action in parser._actions if isinstance(action, argparse._SubParsersAction) for name in action.choices
    }


def run(argv: Sequence[str] | None = None) -> int:
    """Dispatch like `sentra`, with serving as the command when none is named."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] in command_names(build_parser()) or args[0] in TOP_LEVEL_OPTIONS):
        return main(args)
    return main(["serve", *args])
