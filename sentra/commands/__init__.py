"""Agent-side subcommands of `sentra` (run, tail, send, agents), each in its own module."""

from __future__ import annotations

from typing import Any


def register_all(commands: Any) -> None:
    """Add every agent-side subcommand to the `sentra` parser."""
