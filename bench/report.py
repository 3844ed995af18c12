"""Turn a results JSON into Markdown: one table per scenario with the Sentra/nchan and Sentra/peer ratios
from the same run (and, for a scenario in BESIDE, another scenario's figure of the same run and the ratio to it),
the issue's targets marked met or missed, and a summary of py-spy profiles.

    python bench/report.py bench/results/<file>.json   # rewrites the generated part of docs/performance.md
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"
KINDS = ("sentra", "nchan", "peer", "sqlite_loop")
# What Sentra's figures are divided by, in the same run: the other servers, and the plain Python loop writing the
# same rows to SQLite (bench/sqlite_loop.py, beside the 1,000-line batches).
OTHERS = ("nchan", "peer", "sqlite_loop")

# (key, label, direction): direction + when higher is better, - when lower is better, "" for counts.
_CPU = [
    ("server_cores", "server CPU (cores)", "-"),
    ("server_busiest_thread", "server busiest thread (cores)", ""),
    ("load_cores", "load tool CPU (cores)", ""),
    ("load_busiest_thread", "load tool busiest thread (cores)", ""),
    ("machine_busy", "machine busy share", ""),
    ("other_cores", "other processes' CPU (cores)", ""),
]
_STREAM = [
    ("publish_rate", "lines published /s", "+"),
    ("deliveries_per_s", "lines delivered /s (all subscribers)", "+"),
    ("p50_ms", "latency p50 (ms)", "-"),
    ("p99_ms", "latency p99 (ms)", "-"),
    ("max_ms", "latency max (ms)", "-"),
    ("lines_per_event", "lines per SSE event", ""),
    ("lost", "lines lost", ""),
    ("disorder", "lines out of order", ""),
    ("repeats", "lines received twice", ""),
    ("cut", "streams cut off by the server", ""),
    ("resumed", "streams resumed with Last-Event-ID", ""),
    ("server_cpu_per_100k", "server cores per 100k deliveries/s", "-"),
    *_CPU,
]
ROWS: dict[str, list[tuple[str, str, str]]] = {
    "fanout_sustained": [
        ("sustained_rate", "highest sustained rate (lines/s)", "+"),
        ("next_rate", "next rate up, not sustained (lines/s)", ""),
        *_STREAM,
        ("lost_any_step", "lines lost or streams cut, any step", ""),
        ("probe_rate", "back-to-back rate of the probe (lines/s)", ""),
    ],
    "idle": [
        ("open_seconds", "seconds to open all", "-"),
        ("opened", "connections open", ""),
        ("failed", "connections refused or failed", ""),
        ("kb_per_connection", "server memory per connection (KB)", "-"),
        ("rss_before_mb", "server RSS before (MB)", ""),
        ("rss_open_mb", "server RSS with all open (MB)", ""),
        ("rss_closed_mb", "server RSS after closing (MB)", ""),
        ("returned_share", "share of that memory returned on close (1 = all)", ""),
        ("reopen_growth_kb", "growth per connection when reopened after close (KB)", "-"),
        ("rss_final_mb", "server RSS after a second open and close (MB)", ""),
        *_CPU,
    ],
    "ingest": [
        ("posts_per_s", "POSTs /s", "+"),
        ("lines_per_s", "lines /s", "+"),
        ("latency_p50_ms", "POST latency p50 (ms)", "-"),
        ("latency_p99_ms", "POST latency p99 (ms)", "-"),
        ("non_2xx", "non-2xx answers", ""),
        ("socket_errors", "socket errors", ""),
        ("lost", "answered lines not stored", ""),
        *_CPU,
    ],
    "stream": _STREAM,
    "replay": [
        ("seconds", "seconds to the last replayed line", "-"),
        ("lines_per_s", "lines replayed /s", "+"),
        ("lost", "lines lost", ""),
        ("seq_errors", "seq gaps or repeats", ""),
        ("fill_seconds", "seconds to store them (1,000-line POSTs)", "-"),
        ("history_median_ms", "10,000-line history page, median (ms)", "-"),
        ("history_bytes", "history page size (bytes)", ""),
        *_CPU,
    ],
}


@dataclass(frozen=True)
class Beside:
    """A figure of one of Sentra's scenarios shown next to the same figure of another scenario of the same run."""

    scenario: str
    name: str  # the scenario in a word
    other: str
    other_name: str
    other_what: str  # the other scenario in a few words
    key: str = "lines_per_s"


BESIDE = (Beside("ingest_otlp_1000", "OTLP", "ingest_1000", "NDJSON", "1,000 lines per POST, 1c"),)


def rows_for(scenario: str) -> list[tuple[str, str, str]]:
    """The table rows of a scenario."""
    if scenario.startswith("ingest"):
        return ROWS["ingest"]
    return ROWS.get(scenario, ROWS["stream"])


def slug(text: str) -> str:
    """A file-name-safe short form of a CPU model."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "cpu"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ratios(data: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Sentra/nchan and Sentra/peer for every figure where higher or lower is better: the median of the
    ratios taken within each run (run i of Sentra against run i of the other server)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, scenario in data["scenarios"].items():
        servers = scenario["servers"]
        if "sentra" not in servers:
            continue
        for other in OTHERS:
            if other not in servers:
                continue
            pairs = [
                (a, b)
                for a, b in zip(servers["sentra"]["runs"], servers[other]["runs"], strict=False)
                if "error" not in a and "error" not in b
            ]
            for key, _, direction in rows_for(name):
                values = sorted(
                    a[key] / b[key]
                    for a, b in pairs
                    if direction and _number(a.get(key)) and _number(b.get(key)) and b[key]
                )
                if values:
                    out.setdefault(name, {}).setdefault(other, {})[key] = round(values[len(values) // 2], 3)
    return out


def beside_ratios(data: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """For each BESIDE pair Sentra ran: the figure's ratio to the other scenario's, the median of the ratios taken
    within each run (run i of one scenario against run i of the other)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for pair in BESIDE:
        key = pair.key
        mine, theirs = (_sentra_runs(data, name) for name in (pair.scenario, pair.other))
        values = sorted(
            a[key] / b[key]
            for a, b in zip(mine, theirs, strict=False)
            if _number(a.get(key)) and _number(b.get(key)) and b[key]
        )
        if values:
            out.setdefault(pair.scenario, {}).setdefault(pair.other, {})[key] = round(values[len(values) // 2], 3)
    return out


def _sentra_runs(data: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = (
        data["scenarios"].get(scenario, {}).get("servers", {}).get("sentra", {}).get("runs", [])
    )
    return runs


def _beside(data: dict[str, Any]) -> list[tuple[Beside, str, Any, Any, float]]:
    """Each BESIDE pair measured: the pair, the figure's label, the two medians and the same-run ratio."""
    found = []
    for pair in BESIDE:
        ratio = beside_ratios(data).get(pair.scenario, {}).get(pair.other, {}).get(pair.key)
        if ratio is not None:
            label = next(label for key, label, _ in rows_for(pair.other) if key == pair.key)
            mine, theirs = (_median(data, name, "sentra").get(pair.key) for name in (pair.scenario, pair.other))
            found.append((pair, label, mine, theirs, ratio))
    return found


def beside_text(data: dict[str, Any]) -> str:
    """The BESIDE comparisons as plain text for the terminal (empty when none was measured)."""
    return "\n".join(
        f"{pair.name} {label}: {_fmt(mine)}; {pair.other_name} ({pair.other_what}): {_fmt(theirs)}; "
        f"{pair.name}/{pair.other_name} {_times(ratio)} (same run)"
        for pair, label, mine, theirs, ratio in _beside(data)
    )


def _beside_rows(data: dict[str, Any], name: str, kinds: list[str], empty: int) -> list[str]:
    """Table rows of a scenario's BESIDE figures: the other scenario's on Sentra, and the ratio to it."""
    rows = []
    for pair, label, _, theirs, ratio in _beside(data):
        if pair.scenario != name:
            continue
        for head, value in (
            (f"{label}, {pair.other_name} ({pair.other_what}), same run", _fmt(theirs)),
            (f"{label}, {pair.name} / {pair.other_name}", _times(ratio)),
        ):
            cells = [head] + [value if k == "sentra" else "" for k in kinds] + [""] * empty
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}×"


def one_line(scenario: str, result: dict[str, Any]) -> str:
    """The headline figures of one run, for progress output."""
    keys: tuple[str, ...]
    if scenario == "idle":
        keys = ("opened", "open_seconds", "kb_per_connection", "returned_share")
    elif scenario.startswith("ingest"):
        keys = ("posts_per_s", "lines_per_s", "latency_p99_ms", "lost")
    elif scenario == "replay":
        keys = ("seconds", "lost", "history_median_ms")
    elif scenario == "fanout_sustained":
        keys = ("sustained_rate", "deliveries_per_s", "p50_ms", "p99_ms", "next_rate", "next_why", "lost_any_step")
    else:
        keys = ("publish_rate", "deliveries_per_s", "p50_ms", "p99_ms", "lost", "cut")
    shown = " ".join(f"{k}={_fmt(result.get(k))}" for k in keys if k in result)
    return f"{shown} server={result.get('server_cores')} load={result.get('load_cores')} [{result.get('bottleneck')}]"


def _median(data: dict[str, Any], scenario: str, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = data["scenarios"].get(scenario, {}).get("servers", {}).get(kind, {}).get("median", {})
    return found


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None, str]]:
    """The issue's targets: (target, Sentra's figure, met, how far off)."""
    fan, fan_n = _median(data, "fanout_max", "sentra"), _median(data, "fanout_max", "nchan")
    held, held_n = _median(data, "fanout_sustained", "sentra"), _median(data, "fanout_sustained", "nchan")
    paced = _median(data, "paced", "sentra")
    ing1, ing1000 = _median(data, "ingest_1", "sentra"), _median(data, "ingest_1000", "sentra")
    idle, replay = _median(data, "idle", "sentra"), _median(data, "replay", "sentra")
    out: list[tuple[str, str, bool | None, str]] = []

    def at_least(name: str, value: Any, goal: float, unit: str = "") -> None:
        if value is None:
            out.append((name, "not measured", None, ""))
            return
        met = value >= goal
        out.append(
            (
                name,
                f"{_fmt(value)}{unit}",
                met,
                "" if met else f"{_fmt(goal - value)}{unit} short ({value / goal:.2f}× the goal)",
            )
        )

    def at_most(name: str, value: Any, goal: float, unit: str = "") -> None:
        if value is None:
            out.append((name, "not measured", None, ""))
            return
        met = value <= goal
        out.append(
            (
                name,
                f"{_fmt(value)}{unit}",
                met,
                "" if met else f"{_fmt(value - goal)}{unit} over ({value / goal:.2f}× the limit)",
            )
        )

    if held and held_n:
        at_least(
            "Fan-out 1×100, one line per POST: lines delivered/s at the highest sustained rate ≥ nchan's in the same "
            f"run (nchan: {_fmt(held_n.get('deliveries_per_s'))}/s at {_fmt(held_n.get('sustained_rate'))} lines/s)",
            held.get("deliveries_per_s"),
            held_n["deliveries_per_s"],
            "/s",
        )
    at_most("Fan-out 1×100: p99 ≤ 10 ms at that rate", held.get("p99_ms"), 10, " ms")
    at_most(
        "Fan-out 1×100: nothing lost, no subscriber cut off (back to back and every paced step)",
        (fan.get("lost") or 0) + (fan.get("cut") or 0) + (held.get("lost_any_step") or 0) if fan or held else None,
        0,
    )
    at_least("Paced 1×100 at 1,000 lines/s: ≥ 990 lines/s published", paced.get("publish_rate"), 990, "/s")
    at_most("Paced: p99 ≤ 3 ms", paced.get("p99_ms"), 3, " ms")
    at_most("Paced: nothing lost", paced.get("lost") if paced else None, 0)
    if fan and fan_n:
        out.append(
            (
                "Fan-out back to back (each publisher POSTs when its answer came): delivered/s, p99",
                f"Sentra {_fmt(fan.get('deliveries_per_s'))}/s, {_fmt(fan.get('p99_ms'))} ms; "
                f"nchan {_fmt(fan_n.get('deliveries_per_s'))}/s, {_fmt(fan_n.get('p99_ms'))} ms",
                None,
                "reported",
            )
        )
    if fan:
        out.append(
            (
                "Server CPU per 100,000 deliveries/s, next to nchan's (~16% of a core on the issue's machine)",
                f"Sentra {_fmt(fan.get('server_cpu_per_100k'))} cores, "
                f"nchan {_fmt(fan_n.get('server_cpu_per_100k'))} cores",
                None,
                "reported",
            )
        )
    at_least("Ingest ≥ 400,000 lines/s in 1,000-line batches, durable", ing1000.get("lines_per_s"), 400_000, "/s")
    same_run = ratios(data)
    loop = _median(data, "ingest_1000", "sqlite_loop")
    at_least(
        "Ingest, 1,000-line batches: lines/s ≥ a plain Python loop writing the same rows to SQLite, same run (loop: "
        f"{_fmt(loop.get('lines_per_s'))} rows/s; the figure is Sentra/loop)",
        same_run.get("ingest_1000", {}).get("sqlite_loop", {}).get("lines_per_s"),
        1.0,
        "×",
    )
    at_least("Ingest ≥ 10,000 single-line POSTs/s", ing1.get("posts_per_s"), 10_000, "/s")
    peer1 = same_run.get("ingest_1", {}).get("peer", {}).get("posts_per_s")
    if peer1 is not None:
        out.append(("Ingest, single-line POSTs/s: Sentra/Starlette peer, same run", _times(peer1), None, "reported"))
    at_most("Idle: ≤ 15 KB per SSE connection", idle.get("kb_per_connection"), 15, " KB")
    if idle and idle.get("opened", 0) < 10_000:
        out.append(
            ("Idle: 10,000 connections open in ≤ 2 s", f"only {_fmt(idle.get('opened'))} opened in this run", None, "")
        )
    else:
        at_most("Idle: 10,000 connections open in ≤ 2 s", idle.get("open_seconds"), 2, " s")
    at_least("Idle: memory returned on close (≥ 80% of what the connections took)", idle.get("returned_share"), 0.8)
    at_most("Replay: 100,000 stored lines to a late joiner in ≤ 1 s", replay.get("seconds"), 1, " s")
    return out


def targets_text(data: dict[str, Any]) -> str:
    """The targets as plain text for the terminal."""
    marks = {True: "met   ", False: "MISSED", None: "      "}
    return "\n".join(f"{marks[met]} {name}: {figure} {gap}".rstrip() for name, figure, met, gap in targets(data))


_PLUMBING = re.compile(
    r"\((?:asyncio/|selectors\.py|threading\.py|concurrent/futures/|runners\.py|server\.py|sentra/cli/__init__\.py"
    r"|<frozen)"
)


def top_functions(collapsed: str, count: int = 15) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: the functions with most samples on top of the stack (self), and the
    functions with most samples anywhere in the stack (inclusive, leaving out the event loop's and the
    threads' own frames), as percentages of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            if not _PLUMBING.search(frame):
                inclusive[frame] += n
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(frame, round(100 * n / total, 1)) for frame, n in own.most_common(count)],
        "inclusive": [(frame, round(100 * n / total, 1)) for frame, n in inclusive.most_common(count)],
    }


def ladder(servers: dict[str, Any], kinds: list[str]) -> list[str]:
    """For a stepped scenario: each rate tried, each server's median p99 there and how many runs did not
    sustain it (with the first reason), so the servers compare at the same rate too."""
    cells: dict[float, dict[str, list[dict[str, Any]]]] = {}
    for kind in kinds:
        for run in servers[kind]["runs"]:
            for step in run.get("steps", []):
                cells.setdefault(step["rate"], {}).setdefault(kind, []).append(step)
    if not cells:
        return []
    out = [
        "Every rate tried, on each server's own ladder and at the other servers' highest sustained rates of the"
        " same run (median p99 of the runs that tried it; ✗ n/m: not sustained in n of m runs):",
        "",
        "| lines/s | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    reasons: list[str] = []
    for rate in sorted(cells):
        row = [_fmt(rate)]
        for kind in kinds:
            steps = cells[rate].get(kind, [])
            p99s = sorted(step["p99_ms"] for step in steps if _number(step.get("p99_ms")))
            failed = [step for step in steps if not step["sustained"]]
            cell = f"{_fmt(p99s[len(p99s) // 2])} ms" if p99s else ("–" if not steps else "")
            if failed:
                cell += f" ✗ {len(failed)}/{len(steps)}"
                reasons.append(f"{kind} at {_fmt(rate)} lines/s: {failed[0]['why']}")
            row.append(cell.strip())
        out.append("| " + " | ".join(row) + " |")
    out += ["", "Not sustained: " + "; ".join(reasons) + "." if reasons else "Every rate tried was sustained.", ""]
    return out


def render(data: dict[str, Any], json_path: str) -> str:
    """The generated Markdown."""
    m, v = data["machine"], data["versions"]
    out = [
        f"Generated by `{data['command']}` on {data['date']} ({data['runs']} run(s), medians; "
        f"raw figures of every run in "
        + (f"[`{json_path}`](../{json_path}))." if not json_path.startswith("/") else f"`{json_path}`)."),
        "",
        f"**Machine:** {m['nproc']} cores, {m['cpu_model']}, Linux {m['kernel']}, {m['memory_gib']} GiB, "
        f"open-file limit {m['fd_limit']:,}. Machine busy share before each run (other work): "
        + ", ".join(f"{b:.0%}" for b in data.get("background_busy", []))
        + ".",
        "",
        "**Versions:** "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ". Sentra commit of each run: "
        + ", ".join(f"`{c}`" for c in data.get("run_commits", []))
        + ".",
        "",
    ]
    if data.get("sentra_settings"):
        out += [
            "**Sentra settings changed from the defaults:** "
            + ", ".join(f"`{k} = {val}`" for k, val in data["sentra_settings"].items()),
            "",
        ]
    out += ["### Targets (issues 5 and 26)", "", "| target | Sentra | met | how far |", "|---|---|---|---|"]
    for name, figure, met, gap in targets(data):
        out.append(f"| {name} | {figure} | {'yes' if met else 'no' if met is False else '–'} | {gap} |")
    out.append("")
    for name, scenario in data["scenarios"].items():
        servers = scenario["servers"]
        kinds = [k for k in KINDS if k in servers]
        out += [f"### {scenario['title']}", ""]
        head = ["figure", *kinds]
        others = [(k, f"Sentra/{k}") for k in OTHERS if k in servers and "sentra" in servers]
        head += [label for _, label in others]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        medians = {k: servers[k]["median"] for k in kinds}
        same_run = ratios(data).get(name, {})
        for key, label, direction in rows_for(name):
            if not any(key in medians[k] for k in kinds):
                continue
            arrow = {"+": " ↑", "-": " ↓"}.get(direction, "")
            cells = [label + arrow] + [_fmt(medians[k].get(key)) for k in kinds]
            cells += [_times(same_run.get(k, {}).get(key)) for k, _ in others]
            out.append("| " + " | ".join(cells) + " |")
        out += _beside_rows(data, name, kinds, len(others))
        verdicts = []
        for k in kinds:
            errors = [run["error"] for run in servers[k]["runs"] if "error" in run]
            if errors:
                verdicts.append(f"{k}: {len(errors)} run(s) failed ({errors[-1][:200]})")
            seen = Counter(
                re.sub(r" \([0-9.]+ cores\)", "", str(run.get("bottleneck")))
                for run in servers[k]["runs"]
                if "error" not in run
            )
            bound = " — **lower bound**" if medians[k].get("lower_bound") else ""
            if seen:
                verdicts.append(
                    f"{k}: " + ", ".join(f"{b} ({n}/{sum(seen.values())})" for b, n in seen.items()) + bound
                )
        out += ["", "Bottleneck: " + "; ".join(verdicts) + ".", ""]
        out += ladder(servers, kinds)
    if data.get("profile"):
        out += ["### Where Sentra's time goes (py-spy, 200 Hz)", ""]
        for name, prof in data["profile"].items():
            out += [
                f"**{name}** ({prof['figure']}): flame graph "
                f"[`{prof['flamegraph']}`](../bench/results/{prof['flamegraph']}).",
                "",
            ]
            top = prof.get("top") or {}
            if top.get("self"):
                out += ["| on CPU (self) | % | inside (inclusive) | % |", "|---|---|---|---|"]
                selfs, incl = top["self"][:10], top.get("inclusive", [])[:10]
                for i in range(max(len(selfs), len(incl))):
                    a = selfs[i] if i < len(selfs) else ("", "")
                    b = incl[i] if i < len(incl) else ("", "")
                    out.append(f"| `{a[0]}` | {a[1]} | `{b[0]}` | {b[1]} |" if b[0] else f"| `{a[0]}` | {a[1]} | | |")
                out.append("")
    return "\n".join(out)


def update_doc(doc: Path, data: dict[str, Any], json_path: Path) -> None:
    """Replace the generated part of the Markdown report, keeping the hand-written text around it."""
    rel = str(json_path.relative_to(ROOT)) if json_path.is_relative_to(ROOT) else str(json_path)
    generated = f"{START}\n{render(data, rel)}\n{END}"
    if doc.exists() and START in doc.read_text() and END in doc.read_text():
        text = doc.read_text()
        text = text[: text.index(START)] + generated + text[text.index(END) + len(END) :]
    else:
        doc.parent.mkdir(parents=True, exist_ok=True)
        text = f"# Performance\n\n{generated}\n"
    doc.write_text(text)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    update_doc(ROOT / "docs" / "performance.md", json.loads(source.read_text()), source.resolve())
