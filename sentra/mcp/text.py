"""Agents and lines as text an assistant reads well: one line each, times in ISO 8601 UTC, fields as JSON."""

from __future__ import annotations

import json

from sentra.lines import Line
from sentra.models import Agent
from sentra.sse import iso_time


def agent_summary(agent: Agent) -> str:
    """One agent on one line: id, name, status, line count, last activity and labels."""
    parts = [agent.id]
    if agent.name:
        parts.append(json.dumps(agent.name, ensure_ascii=False))
    status = agent.status if not agent.reason else f"{agent.status} ({agent.reason})"
    count = f"{agent.line_count} lines (seq {agent.first_seq}-{agent.last_seq})" if agent.line_count else "no lines"
    parts.append(f"{status}, {count}")
    last = max(agent.updated_at, agent.last_line_at or 0.0)
    parts.append(f"last activity {iso_time(last)}")
    if agent.labels:
        parts.append("labels " + ", ".join(f"{key}={value}" for key, value in sorted(agent.labels.items())))
    return " | ".join(parts)


def agent_details(agent: Agent) -> str:
    """Every field of an agent, one per line."""
    rows = [
        ("id", agent.id),
        ("name", agent.name or "(none)"),
        ("owner", agent.owner),
        ("status", agent.status),
        ("reason", agent.reason or "(none)"),
        ("labels", ", ".join(f"{key}={value}" for key, value in sorted(agent.labels.items())) or "(none)"),
        (
            "lines",
            f"{agent.line_count} stored, seq {agent.first_seq} to {agent.last_seq}" if agent.line_count else "none",
        ),
        ("created", iso_time(agent.created_at)),
        ("updated", iso_time(agent.updated_at)),
        ("last line", iso_time(agent.last_line_at) if agent.last_line_at is not None else "(none yet)"),
        *summary_rows(agent),
    ]
    return "\n".join(f"{name}: {value}" for name, value in rows)


def summary_rows(agent: Agent) -> list[tuple[str, str]]:
    """The run summary's fields (sentra/summary.py) as agent_details shows them."""
    summary = agent.summary.to_json()
    counts = ", ".join(f"{level} {count}" for level, count in summary["level_counts"].items() if count)
    usage = summary["usage"]
    return [
        ("lines by level", counts or "none"),
        ("first error", f"seq {summary['first_error_seq']}" if summary["first_error_seq"] else "(none)"),
        ("usage", f"{usage['tokens']} tokens, cost {usage['cost']}" if usage else "(none reported)"),
        ("ended", iso_time(summary["ended_at"]) if summary["ended_at"] is not None else "(running)"),
    ]


def line_text(line: Line, *, with_agent: bool = False) -> str:
    """One line: [agent] #seq time LEVEL [source] message {fields}."""
    parts = [line.agent] if with_agent else []
    parts += [f"#{line.seq}", iso_time(line.ts), line.level]
    if line.source:
        parts.append(f"[{line.source}]")
    parts.append(line.message)
    if line.fields:
        parts.append(json.dumps(line.fields, ensure_ascii=False, sort_keys=True))
    return " ".join(parts)


def lines_text(lines: list[Line], *, with_agent: bool = False) -> str:
    """Lines, one per text line."""
    return "\n".join(line_text(line, with_agent=with_agent) for line in lines)
