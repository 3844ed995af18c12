"""Search speed over HTTP: GET /api/search on a database of many agent-like lines.

One command (from the repository root):

    python bench/search.py [--lines 10000000] [--agents 1000] [--queries 20] [--keep DIR]

1. Builds a Sentra SQLite database: the agents through Sentra's own store (owner "bench", label team=t0…t9), then
   the lines with the writer's own table layout in big transactions (fast: Python makes the rows, SQLite appends
   them in key order). Messages are what agents send (HTTP requests, tool calls, model usage, payment errors), with
   a `source`, a small `fields` object and mixed levels. A rare word occurs in exactly RARE_COUNT lines (half of
   them in the message, half in a field value); the common word in about a third of the lines; the phrase
   "card declined" in about 2%.
2. Starts the real server (bench/servers.py) on that database with the default config; the word index is built in
   the background on first start, and the benchmark waits for the log's "search index: built".
3. Times `--queries` GET /api/search requests (limit=100, one keep-alive connection) for each of a rare word, a
   common word and a two-word phrase, each plain, with level=ERROR and with label=team=t3; checks every answer
   (the rare word: exactly the lines it is in; the others: a full page of lines that hold the words and pass the
   filter) and writes the median and p99 (nearest rank: with 20 queries, the slowest) to
   bench/results/search-<lines>.json.

--keep DIR builds the database in DIR once and reuses it on later runs (the index too, once built).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Server, start_sentra

from sentra.storage.sqlite import Store

RESULTS = Path(__file__).resolve().parent / "results"
OWNER = "bench"
RARE = "zephyrquux"
COMMON = "request"
PHRASE = "card declined"
LABEL = ("team", "t3")
RARE_COUNT = 10
ROWS_PER_COMMIT = 200_000
INDEX_TIMEOUT = 3 * 3600.0
RESOURCES = ["items", "users", "orders", "invoices", "sessions", "files", "models", "jobs"]
TOOLS = ["search_web", "read_file", "write_file", "run_shell", "http_get", "sql_query", "send_email"]
WORDS = [
    *("plan", "step", "task", "result", "retry", "timeout", "response", "token", "model", "prompt", "completion"),
    *("file", "path", "data", "value", "queue", "worker", "cache", "hit", "miss", "customer", "order", "invoice"),
    *("account", "balance", "limit", "document", "page", "section", "summary"),
]


def agent_labels(index: int) -> dict[str, str]:
    """Agent `index`'s labels: ten teams, so a label filter keeps a tenth of the agents."""
    return {LABEL[0]: f"t{index % 10}", "env": "prod" if index % 2 else "staging"}


def rare_positions(lines: int, agents: int) -> dict[int, int]:
    """The global line numbers that carry the rare word (→ which of them), spread over the whole database and, as
    the agents are filled one after the other, over agents of every label."""
    per_agent = lines // agents
    return {(lines * (2 * k + 1) // (2 * RARE_COUNT) + k * per_agent) % lines: k for k in range(RARE_COUNT)}


def make_line(r: random.Random, rare: bool, rare_in_field: bool) -> tuple[int, str, str, str]:
    """One line as agents send it: level, source, message, fields (JSON). Only the HTTP lines hold the common word,
    only the payment lines the phrase."""
    kind = r.random()
    rid = f"{r.getrandbits(32):08x}"
    if kind < 0.34:
        status = r.choice((200, 200, 200, 201, 204, 400, 404, 429, 500, 502))
        path = f"/api/v1/{r.choice(RESOURCES)}?page={r.randint(1, 50)}"
        message = f"GET {path} {status} {r.randint(1, 3000) / 10}ms request {rid}"
        fields: dict[str, Any] = {"path": path, "status": status}
        level, source = (20 if status < 400 else 30 if status < 500 else 40), "http"
    elif kind < 0.64:
        tool = r.choice(TOOLS)
        message = f"calling tool {tool} step {r.randint(1, 60)}"
        fields = {"tool": tool, "call_id": "call_" + rid}
        level, source = 20, "agent"
    elif kind < 0.88:
        message = " ".join(r.choices(WORDS, k=r.randint(4, 12))).capitalize() + "."
        fields = {"step": r.randint(1, 60)}
        level, source = r.choice((10, 20, 20, 20)), "agent"
    elif kind < 0.98:
        message = f"token usage: prompt={r.randint(100, 9000)} completion={r.randint(10, 2000)} model=gpt-4o-mini"
        fields = {"model": "gpt-4o-mini"}
        level, source = 10, "llm"
    else:
        message = f"Payment failed: card declined for customer cus_{rid}"
        fields = {"customer": "cus_" + rid, "error_code": "card_declined"}
        level, source = 40, "payments"
    if rare:
        if rare_in_field:  # and an error: so that the level filter keeps half of the rare word's lines
            fields["note"] = f"flagged {RARE}"
            level = 40
        else:
            message = f"{message} {RARE}"
    return level, source, message, json.dumps(fields, separators=(",", ":"))


async def create_agents(db: Path, agents: int) -> None:
    """The agents, through Sentra's own store (no word index yet: the server builds it on first start)."""
    store = Store(db, search_index=False)
    await store.open()
    try:
        for a in range(agents):
            await store.create_agent(f"agent-{a:04d}", OWNER, f"bench agent {a}", agent_labels(a))
    finally:
        await store.close()


def fill_lines(db: Path, lines: int, agents: int) -> dict[str, Any]:
    """Store `lines` lines over the agents, agent by agent, in big transactions; what the rare word should find."""
    rare_at = rare_positions(lines, agents)
    r = random.Random(23)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    pks = [row[0] for row in conn.execute("SELECT pk FROM agents WHERE owner = ? ORDER BY id", (OWNER,))]
    # How many lines each case should find: the rare word's are counted exactly, the others to check a page.
    expected = {f"{word} {name}": 0 for word in ("rare", "common", "phrase") for name in ("plain", "level", "label")}
    start = time.time() - lines * 0.001  # the newest line about now, one line a millisecond over all agents
    number = 0
    rows: list[tuple[int, int, float, int, str, str, str]] = []
    conn.execute("BEGIN")
    for a, pk in enumerate(pks):
        count = lines // agents + (1 if a < lines % agents else 0)
        ts = 0.0
        for seq in range(1, count + 1):
            rare = number in rare_at
            level, source, message, fields = make_line(r, rare, rare_in_field=rare_at.get(number, 0) % 2 == 1)
            ts = start + (seq * agents + a) * 0.001
            rows.append((pk, seq, ts, level, source, message, fields))
            word = "rare" if rare else "common" if source == "http" else "phrase" if source == "payments" else ""
            if word:
                expected[f"{word} plain"] += 1
                expected[f"{word} level"] += level >= 40
                expected[f"{word} label"] += agent_labels(a)[LABEL[0]] == LABEL[1]
            number += 1
            if len(rows) >= ROWS_PER_COMMIT:
                conn.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
                conn.execute("BEGIN")
                rows.clear()
        conn.execute(
            "UPDATE agents SET first_seq = 1, last_seq = ?, last_line_at = ?, updated_at = ? WHERE pk = ?",
            (count, ts or None, ts or time.time(), pk),
        )
    conn.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()
    return expected


def wait_for_index(server: Server, timeout: float) -> float:
    """Seconds until the server's log says the word index is built (0 if it was already, from an earlier run)."""
    started = time.monotonic()
    log = server.workdir / "stderr.log"
    while time.monotonic() - started < timeout:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "search index: built" in text:
            return time.monotonic() - started
        if "search index: adding" not in text and time.monotonic() - started > 5:
            return 0.0  # nothing to add: built by an earlier run on this database
        if server.process.poll() is not None:
            raise RuntimeError(f"sentra exited while building the index:\n{server.tail()}")
        time.sleep(0.5)
    raise RuntimeError(f"the word index was not built within {timeout:.0f} s:\n{server.tail()}")


def search(conn: http.client.HTTPConnection, token: str, params: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """One GET /api/search: its wall time in ms and its answer."""
    path = "/api/search?" + urllib.parse.urlencode(params)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
    return elapsed, json.loads(body)


def check(case: str, params: dict[str, str], answer: dict[str, Any], expected: dict[str, int]) -> int:
    """Raise unless the answer holds what it should; how many lines it holds."""
    lines = answer["lines"]
    words = params["q"].strip('"').lower().split()
    word = {RARE: "rare", COMMON: "common"}.get(params["q"], "phrase")
    filter_name = "level" if "level" in params else "label" if "label" in params else "plain"
    # The rare word's lines all fit a page; the others fill it (a rare word in an HTTP line may add one more).
    wanted = min(expected[f"{word} {filter_name}"], int(params["limit"]))
    if not wanted <= len(lines) <= min(wanted + RARE_COUNT, int(params["limit"])):
        raise RuntimeError(f"{case}: {len(lines)} lines, expected {wanted}")
    for line in lines:
        text = (line["message"] + " " + json.dumps(line.get("fields") or {})).lower()
        if not all(word in text for word in words):
            raise RuntimeError(f"{case}: a line without {words}: {line}")
        if "level" in params and line["level"] not in ("ERROR", "CRITICAL", "FATAL"):
            raise RuntimeError(f"{case}: a line below ERROR: {line}")
        if "label" in params and int(line["agent"].split("-")[1]) % 10 != int(LABEL[1][1:]):
            raise RuntimeError(f"{case}: a line of an agent without {LABEL}: {line}")
    return len(lines)


def p99(times: list[float]) -> float:
    """The 99th percentile by nearest rank (of 20 queries: the slowest)."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def run_queries(server: Server, queries: int, expected: dict[str, int]) -> list[dict[str, Any]]:
    """Every case, `queries` times each, checked; their figures."""
    token = jwt.encode({"sub": OWNER, "iat": int(time.time()), "jti": "bench-search"}, server.secret, "HS256")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    figures = []
    try:
        for word_name, q in (("rare word", RARE), ("common word", COMMON), ("two-word phrase", f'"{PHRASE}"')):
            for filter_name, extra in (
                ("", {}),
                ("level=ERROR", {"level": "ERROR"}),
                (f"label={LABEL[0]}={LABEL[1]}", {"label": f"{LABEL[0]}={LABEL[1]}"}),
            ):
                case = f"{word_name} {filter_name}".strip()
                params = {"q": q, "limit": "100", **extra}
                times, found = [], 0
                for _ in range(queries):
                    elapsed, answer = search(conn, token, params)
                    found = check(case, params, answer, expected)
                    times.append(elapsed)
                figures.append(
                    {
                        "case": case,
                        "q": q,
                        **extra,
                        "found": found,
                        "median_ms": round(statistics.median(times), 2),
                        "p99_ms": round(p99(times), 2),
                    }
                )
    finally:
        conn.close()
    return figures


def main() -> None:
    """Build (or reuse), start, wait for the index, time, write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000_000, help="stored lines (default 10,000,000)")
    parser.add_argument("--agents", type=int, default=1000, help="agents the lines are spread over (default 1,000)")
    parser.add_argument("--queries", type=int, default=20, help="timed queries per case (default 20)")
    parser.add_argument("--keep", type=Path, help="build the database in DIR once and reuse it")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/search-<lines>.json)")
    args = parser.parse_args()
    if args.lines < 2 * RARE_COUNT or args.agents < 10:
        parser.error(f"--lines must be at least {2 * RARE_COUNT} and --agents at least 10")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="sentra-search-bench-"))
    built = workdir / "bench-search.json"
    db = workdir / "sentra.db"
    fill_s = None
    if built.exists():
        expected = json.loads(built.read_text())
        if (expected.pop("lines"), expected.pop("agents")) != (args.lines, args.agents):
            parser.error(f"{workdir} holds {expected['lines']} lines over {expected['agents']} agents")
        print(f"reusing {db}", flush=True)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        t0 = time.perf_counter()
        asyncio.run(create_agents(db, args.agents))
        expected = fill_lines(db, args.lines, args.agents)
        fill_s = time.perf_counter() - t0
        built.write_text(json.dumps({"lines": args.lines, "agents": args.agents, **expected}))
        print(f"stored {args.lines:,} lines over {args.agents:,} agents in {fill_s:.0f} s", flush=True)
    server = start_sentra(workdir)
    try:
        index_s = wait_for_index(server, INDEX_TIMEOUT)
        print(f"word index built in {index_s:.0f} s", flush=True)
        figures = run_queries(server, args.queries, expected)
    finally:
        server.stop()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lines": args.lines,
        "agents": args.agents,
        "queries": args.queries,
        "fill_s": None if fill_s is None else round(fill_s, 1),
        "index_build_s": round(index_s, 1),
        "expected": expected,
        "cases": figures,
    }
    out = args.out or RESULTS / f"search-{args.lines}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'case':32s} {'found':>6s} {'median ms':>10s} {'p99 ms':>8s}")
    for row in figures:
        print(f"{row['case']:32s} {row['found']:6d} {row['median_ms']:10.1f} {row['p99_ms']:8.1f}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
