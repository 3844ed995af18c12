"""A run's summary (lines per level, first error, usage, end time) and the tally of one batch of lines that the
storage writers add to it, in the transaction that stores the lines.

The summary counts the lines that are stored: retention and DELETE take theirs away again. `usage` is null until a
stored line carries a numeric `tokens` or `cost` field, so a client can tell "no usage reported" from zero.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sentra.line_values import ROW_WIDTH
from sentra.lines import LEVELS, CommittedLines, NewLines

LEVEL_NAMES = tuple(LEVELS)
ERROR_LEVEL = LEVELS["ERROR"]
# The volume index keeps counts per second, and per 10 s, minute, 10 minutes and hour for charts with wider
# buckets: a chart reads the coarsest granule not wider than its buckets, so fewer than 10 rows per bucket and
# level whatever the number of lines (see storage/*_summary.py; bench/volume.py measures it).
GRANULES = (1, 10, 60, 600, 3600)


def usage_number(value: Any) -> float | None:
    """A field value counted as usage: a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def add_volume(volume: Counter[tuple[int, int, int]], second: int, level: int, count: int) -> None:
    """Count `count` lines of `level` at `second` in every granule of the volume index."""
    for granule in GRANULES:
        volume[(granule, second - second % granule, level)] += count


def _plain(number: float) -> int | float:
    """Whole numbers as ints, so tokens read back as 1200, not 1200.0."""
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The counts kept beside an agent record; immutable, so copies of an agent share it safely."""

    counts: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    first_error_seq: int | None = None
    tokens: float = 0.0
    cost: float = 0.0
    usage_lines: int = 0
    ended_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The summary fields of the agent record."""
        usage = None
        if self.usage_lines:
            usage = {"tokens": _plain(self.tokens), "cost": _plain(self.cost)}
        return {
            "level_counts": dict(zip(LEVEL_NAMES, self.counts, strict=True)),
            "first_error_seq": self.first_error_seq,
            "ended_at": self.ended_at,
            "usage": usage,
        }

    def to_wire(self) -> list[Any]:
        """As a JSON array (the Redis bus, the summary column's JSON)."""
        return [*self.counts, self.first_error_seq, self.tokens, self.cost, self.usage_lines, self.ended_at]

    @classmethod
    def from_wire(cls, row: Any) -> RunSummary:
        """From `to_wire`'s array, or its JSON text; the empty summary for None."""
        if row is None:
            return EMPTY_SUMMARY
        if isinstance(row, str):
            row = json.loads(row)
        debug, info, warning, error, critical, first_error, tokens, cost, usage_lines, ended_at = row
        counts = (int(debug), int(info), int(warning), int(error), int(critical))
        first = None if first_error is None else int(first_error)
        ended = None if ended_at is None else float(ended_at)
        return cls(counts, first, float(tokens), float(cost), int(usage_lines), ended)


EMPTY_SUMMARY = RunSummary()


@dataclass
class Tally:
    """What one batch adds to one agent: counts per level number, first error, usage, and volume per granule."""

    levels: Counter[int] = field(default_factory=Counter)
    first_error_seq: int | None = None
    tokens: float = 0.0
    cost: float = 0.0
    usage_lines: int = 0
    volume: Counter[tuple[int, int, int]] = field(default_factory=Counter)

    def add(self, lines: CommittedLines) -> None:
        """Count committed lines (ascending seqs), from their rows: no Line objects are made."""
        for first, new in lines.parts:
            self._add_run(first, new)

    def _add_run(self, first: int, new: NewLines) -> None:
        rows = new.rows
        times = rows[2::ROW_WIDTH]
        level_column = rows[3::ROW_WIDTH]
        # Grouped by (second, level) first, in C: a batch of 1000 lines usually spans a few seconds and levels.
        pairs: Mapping[tuple[int, int], int]
        if times.count(times[0]) == len(times):
            # Lines sent without a time all have their request's: count the levels alone.
            second = int(times[0])
            pairs = {(second, level): count for level, count in Counter(level_column).items()}
        else:
            pairs = Counter(zip(map(int, times), level_column, strict=True))
        levels = self.levels
        volume = self.volume
        errors = False
        for (second, level), count in pairs.items():
            levels[level] += count
            add_volume(volume, second, level, count)
            errors = errors or level >= ERROR_LEVEL
        if errors and self.first_error_seq is None:
            self.first_error_seq = first + next(i for i, level in enumerate(level_column) if level >= ERROR_LEVEL)
        for fields in new.fields:
            if fields and ("tokens" in fields or "cost" in fields):
                tokens = usage_number(fields.get("tokens"))
                cost = usage_number(fields.get("cost"))
                if tokens is not None or cost is not None:
                    self.usage_lines += 1
                    self.tokens += tokens or 0.0
                    self.cost += cost or 0.0

    def counts(self) -> tuple[int, int, int, int, int]:
        """Counts in LEVEL_NAMES order."""
        debug, info, warning, error, critical = (self.levels.get(LEVELS[name], 0) for name in LEVEL_NAMES)
        return (debug, info, warning, error, critical)


def tally_batch(written: Iterable[CommittedLines]) -> dict[str, Tally]:
    """The tally of a group commit's lines per agent id."""
    tallies: dict[str, Tally] = {}
    for lines in written:
        if lines.parts:
            tally = tallies.get(lines.agent_id)
            if tally is None:
                tally = tallies[lines.agent_id] = Tally()
            tally.add(lines)
    return tallies
