"""The volume chart's wire format: a time span cut into equal buckets, each with its lines per level.

Storage answers from its volume index (lines counted per agent, level and second, 10 s, minute, 10 minutes and
hour), never from the lines: `VolumeSpan.granule` picks the coarsest granule of the index not wider than a
bucket, and the SQL folds its rows into bucket numbers, so a chart reads fewer than 10 rows per bucket and level
however long the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sentra.lines import LEVEL_BY_NUMBER, LEVELS
from sentra.summary import GRANULES

DEFAULT_BUCKETS = 60
MAX_BUCKETS = 500


@dataclass(frozen=True, slots=True)
class VolumeSpan:
    """The span [start, end) of a chart, cut into `buckets` buckets of `width` seconds."""

    start: float
    end: float
    buckets: int

    @property
    def width(self) -> float:
        """Seconds per bucket."""
        return (self.end - self.start) / self.buckets

    @property
    def granule(self) -> int:
        """The coarsest index granule (seconds) not wider than a bucket: its counts land in the right bucket
        give or take one granule."""
        return max(granule for granule in GRANULES if granule <= max(self.width, GRANULES[0]))

    def first_row(self) -> int:
        """The start of the first index row that may hold lines of the span."""
        granule = self.granule
        return math.floor(self.start / granule) * granule

    def last_row(self) -> int:
        """The start of the last index row that may hold lines of the span."""
        return math.floor(self.end if self.end != math.floor(self.end) else self.end - 1)


def run_span(
    first_second: int | None, last_second: int | None, buckets: int, since: float | None, until: float | None
) -> VolumeSpan | None:
    """The span to chart: since..until where given, else the stored lines' first and last second; None when
    there is nothing to chart (no lines and no span given)."""
    if first_second is None or last_second is None:
        if since is None or until is None:
            return None
        first_second = last_second = int(since)
    start = float(first_second) if since is None else since
    end = float(last_second + 1) if until is None else until
    if end <= start:
        end = start + 1.0
    return VolumeSpan(start, end, buckets)


def buckets_json(span: VolumeSpan, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The answer of GET /api/agents/{id}/volume from (bucket number, level number, count) rows."""
    counts = [dict.fromkeys(LEVELS, 0) for _ in range(span.buckets)]
    for bucket, level, count in rows:
        counts[min(max(int(bucket), 0), span.buckets - 1)][LEVEL_BY_NUMBER.get(int(level), "INFO")] += int(count)
    width = span.width
    return {
        "buckets": [
            {"start": span.start + i * width, "end": span.start + (i + 1) * width, "counts": counts[i]}
            for i in range(span.buckets)
        ]
    }
