"""Micro-benchmark of the ingest parser: parse_body on one body of the benchmark's agent lines, in this process.

    python bench/parse_body.py [--lines 1000] [--repeats 200] [--python]

Times Sentra's parse_body (this checkout's, or the one PYTHONPATH names, to compare two versions) on an NDJSON
body of wire.agent_body, and prints one JSON object: the median and best milliseconds per body, the lines per
second of the median, and which parser read it (compiled, or python when msgspec is missing or --python asks for
the pure-Python parser).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))  # this checkout, unless PYTHONPATH names another

from wire import agent_body


def measure(lines: int, repeats: int, python_only: bool) -> dict[str, Any]:
    """Milliseconds parse_body takes for one body of `lines` agent lines, `repeats` times."""
    from sentra import lines as parser

    body = agent_body(lines)
    compiled = importlib.util.find_spec("sentra.ingest_decode") is not None and getattr(parser, "_decode_in_c", None)
    if python_only and compiled:
        parse = getattr(parser, "parse_body_in_python")  # noqa: B009 - absent from versions before it

        def run() -> int:
            return len(parse(body, "ndjson", max_line_size=256 * 1024, max_lines=10_000, now=time.time()))
    else:

        def run() -> int:
            return len(parser.parse_body(body, "application/x-ndjson", max_line_size=256 * 1024, max_lines=10_000))

    assert run() == lines
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "parser": "compiled" if compiled and not python_only else "python",
        "sentra": str(Path(parser.__file__).resolve().parent.parent),
        "lines": lines,
        "median_ms": round(median * 1000, 3),
        "best_ms": round(min(times) * 1000, 3),
        "lines_per_s": round(lines / median),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--python", action="store_true", help="the pure-Python parser even where msgspec is")
    args = parser.parse_args()
    print(json.dumps(measure(args.lines, args.repeats, args.python)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
