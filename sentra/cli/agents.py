"""`sentra agents`: a table of the caller's agents with their status and line counts."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from sentra.cli.common import add_connection_options, client_from_args, guarded, parse_labels

STATUSES = ("running", "completed", "failed")
NAME_WIDTH = 40


def register(commands: Any) -> None:
    """Add `sentra agents`."""
    parser = commands.add_parser(
        "agents",
        help="list your agents",
        description="List your agents, newest first: id, name, status, line count and last update.",
    )
    parser.add_argument("--status", choices=STATUSES, help="only agents with this status")
    parser.add_argument(
        "--label", action="append", metavar="KEY=VALUE", help="only agents with this label (repeatable)"
    )
    parser.add_argument("--limit", type=int, default=100, help="show at most this many (default 100)")
    add_connection_options(parser)
    parser.set_defaults(func=guarded(cmd_agents))


def cmd_agents(args: argparse.Namespace) -> int:
    """Print the table."""
    client = client_from_args(args)
    labels = parse_labels(args.label)
    query: dict[str, Any] = {"limit": max(1, args.limit), "status": args.status}
    if labels:
        query["label"] = [f"{key}={value}" for key, value in labels.items()]
    answer = client.request("GET", "/api/agents", query=query)
    rows = [
        (
            str(agent["id"]),
            _shorten(str(agent.get("name") or "")),
            str(agent["status"]),
            str(agent.get("line_count", 0)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(agent["updated_at"]))),
        )
        for agent in answer.get("agents", [])
    ]
    print(format_table(("ID", "NAME", "STATUS", "LINES", "UPDATED"), rows), end="")
    return 0


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, the LINES column right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if header[i] == "LINES" else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip() + "\n")
    return "".join(out)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= NAME_WIDTH else text[: NAME_WIDTH - 1] + "…"
