"""Crash recovery and a full disk: what Sentra acknowledged survives, exactly once, and nothing is half-written.

Many `kill -9`s at random moments while several writers ingest into several agents; each writer retries the
batch a crash left unanswered with the same Idempotency-Key, so at the end every batch is acknowledged and each
line must be stored exactly once, at the seqs its answer named, gap-free, in a database that passes
`PRAGMA integrity_check`. SENTRA_KILLS sets the number of kills (short default for CI).

A full disk: a small tmpfs holds the database (or, where mounting is not allowed, a file-size limit on the
server process stands in for it); ingest answers 507 (or 503) with a JSON error, stores nothing of the refused
batch, keeps serving reads, and takes the same batch once the space returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import make_token
from processes import ServerProcess, free_port, write_config

from .support import knob, record_figures

pytestmark = pytest.mark.slow  # server children killed and starved of disk

KILLS = int(knob("SENTRA_KILLS", 8))
WRITERS = 6
AGENTS = 3  # writers share agents, so concurrent batches of one agent are numbered by one group commit


@dataclass
class Batch:
    """One ingest request: its key, its agent, its messages and, once answered, the seqs it was given."""

    key: str
    agent: str
    messages: list[str]
    seqs: tuple[int, int] | None = None
    replayed: bool = False


@dataclass
class Writer:
    """A client that posts batches and retries an unanswered one with the same Idempotency-Key."""

    number: int
    token: str
    done: list[Batch] = field(default_factory=list)
    pending: Batch | None = None
    made: int = 0

    def next_batch(self) -> Batch:
        """The unanswered batch, or a new one."""
        if self.pending is None:
            self.made += 1
            agent = f"crash-{random.randrange(AGENTS)}"
            count = random.choice([1, 1, 5, 20, 200])
            messages = [f"w{self.number}-b{self.made}-l{n}-{uuid.uuid4().hex[:6]}" for n in range(count)]
            self.pending = Batch(f"w{self.number}-b{self.made}", agent, messages)
        return self.pending

    async def post(self, client: httpx.AsyncClient, batch: Batch) -> bool:
        """True once the batch is acknowledged; False if the server went away before answering."""
        try:
            answer = await client.post(
                f"/api/agents/{batch.agent}/logs",
                json=[{"message": m, "level": "INFO"} for m in batch.messages],
                headers={"Idempotency-Key": batch.key},
            )
        except httpx.HTTPError:
            return False
        if answer.status_code == 503:
            return False  # shutting down: retry later
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["accepted"] == len(batch.messages)
        batch.seqs = (body["first_seq"], body["last_seq"])
        batch.replayed = answer.headers.get("Idempotent-Replayed") == "true"
        self.done.append(batch)
        self.pending = None
        return True

    async def write_until(self, url: str, stop: asyncio.Event) -> None:
        """Post batches until `stop` or until the server stops answering (bounded by count)."""
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10) as c:
            for _ in range(100_000):
                if stop.is_set() or not await self.post(c, self.next_batch()):
                    return


def stored_lines(db: Path) -> dict[str, list[tuple[int, str]]]:
    """(seq, message) of every agent, read straight from the file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT agents.id, seq, message FROM lines JOIN agents ON agents.pk = lines.agent_pk "
            "ORDER BY agents.id, seq"
        ).fetchall()
    out: dict[str, list[tuple[int, str]]] = {}
    for agent, seq, message in rows:
        out.setdefault(agent, []).append((int(seq), str(message)))
    return out


def integrity(db: Path) -> str:
    """What PRAGMA integrity_check says of the file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_kill_9_many_times_under_concurrent_writers_keeps_every_acknowledged_line_exactly_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sentra.db"
    config = write_config(tmp_path)
    writers = [Writer(n, make_token("alice")) for n in range(WRITERS)]
    port = free_port()
    interrupted = 0
    started = time.monotonic()
    for _ in range(KILLS):
        proc = ServerProcess(db, port=port, config=config).start()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.write_until(proc.url, stop)) for w in writers]
        await asyncio.sleep(random.uniform(0.05, 1.0))
        proc.kill()
        stop.set()
        await asyncio.gather(*tasks)
        interrupted += sum(w.pending is not None for w in writers)
    proc = ServerProcess(db, port=port, config=config).start()
    try:
        # Every batch a crash left unanswered is sent again with its key: stored once, whichever side of the
        # crash its commit fell on.
        for writer in writers:
            async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {writer.token}"}) as c:
                if writer.pending is not None:
                    assert await writer.post(c, writer.pending)
        async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {writers[0].token}"}) as c:
            last_seqs = {a: (await c.get(f"/api/agents/{a}")).json()["last_seq"] for a in stored_lines(db)}
    finally:
        assert proc.terminate() == 0, proc.stderr
    batches = [batch for writer in writers for batch in writer.done]
    stored = stored_lines(db)
    for agent, rows in stored.items():
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), f"{agent}: seqs must be gap-free"
        assert last_seqs[agent] == len(rows)
    by_seq = {(agent, seq): message for agent, rows in stored.items() for seq, message in rows}
    for batch in batches:
        assert batch.seqs is not None
        first, last = batch.seqs
        got = [by_seq.get((batch.agent, seq)) for seq in range(first, last + 1)]
        assert got == batch.messages, f"batch {batch.key} is not where its answer said"
    sent = [m for batch in batches for m in batch.messages]
    kept = [message for rows in stored.values() for _, message in rows]
    assert len(kept) == len(set(kept)), "a line was stored twice"
    assert sorted(kept) == sorted(sent), "every acknowledged line, and nothing else, is stored"
    assert integrity(db) == "ok"
    record_figures(
        "crash",
        {
            "kills": KILLS,
            "writers": WRITERS,
            "agents": AGENTS,
            "batches_acknowledged": len(batches),
            "batches_interrupted_and_retried": interrupted,
            "retries_answered_from_idempotency_key": sum(b.replayed for b in batches),
            "lines_verified": len(kept),
            "seconds": round(time.monotonic() - started, 1),
        },
    )


# ---- a full disk ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path`, unmounted afterwards; skips where this process may not mount."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path: Path, size: str) -> None:
    """Give the tmpfs at `path` a new size: the space returns."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


async def fill_until_refused(
    client: httpx.AsyncClient, agent: str, limit: int = 2000
) -> tuple[list[str], httpx.Response]:
    """Post 32 KiB batches until one is refused; the acknowledged messages and the refusal."""
    acked: list[str] = []
    for n in range(limit):
        batch = [f"{agent}-{n}-{i} " + "x" * 4000 for i in range(8)]
        answer = await client.post(f"/api/agents/{agent}/logs", json=batch)
        if answer.status_code != 200:
            return acked, answer
        acked.extend(batch)
    raise AssertionError(f"the disk never filled after {limit} batches")


async def check_refusal_and_recovery(
    proc: ServerProcess, give_space_back: object, statuses: tuple[int, ...]
) -> dict[str, object]:
    """Fill the disk, check the refusal, give the space back, check the same batch then goes in."""
    token = make_token("filler")
    async with httpx.AsyncClient(base_url=proc.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        acked, refused = await fill_until_refused(c, "filler")
        assert refused.status_code in statuses, refused.text
        error = refused.json()["error"]
        assert error["code"] in ("storage_full", "unavailable") and error["message"]
        if refused.status_code == 507:
            assert "disk is full" in error["message"]
        # Nothing of the refused batch is stored, a new agent's first batch leaves no agent behind,
        # and reads go on.
        history = (await c.get("/api/agents/filler/logs", params={"limit": 10000})).json()["lines"]
        assert [line["message"] for line in history] == acked
        assert [line["seq"] for line in history] == list(range(1, len(acked) + 1))
        again = await c.post("/api/agents/newcomer/logs", json=["y" * 60000] * 4)
        assert again.status_code in statuses, again.text
        assert (await c.get("/api/agents/newcomer")).status_code == 404
        assert (await c.get("/healthz")).status_code == 200
        assert callable(give_space_back)
        give_space_back()
        retry = [f"after-{i}" for i in range(8)]
        answer = await c.post("/api/agents/filler/logs", json=retry)
        assert answer.status_code == 200, answer.text
        assert answer.json()["first_seq"] == len(acked) + 1
        history = (await c.get("/api/agents/filler/logs", params={"limit": 10000})).json()["lines"]
        assert [line["message"] for line in history] == [*acked, *retry]
    return {"lines_before_full": len(acked), "refused_status": refused.status_code, "refused_code": error["code"]}


async def test_full_disk_refuses_ingest_with_507_and_recovers_when_space_returns(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "3m") as disk:
        proc = ServerProcess(disk / "sentra.db", config=write_config(tmp_path)).start()
        try:
            figures = await check_refusal_and_recovery(proc, lambda: resize(disk, "64m"), (507,))
        finally:
            assert proc.terminate() == 0, proc.stderr
        assert integrity(disk / "sentra.db") == "ok"
    record_figures("disk_full", {"tmpfs": figures})


def start_with_file_size_limit(db: Path, config: Path, limit: int) -> ServerProcess:
    """A server whose files may not grow past `limit` bytes (SIGXFSZ ignored, so a write fails instead)."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # Only the soft limit: lifting it again later needs no privilege.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return ServerProcess(db, config=config, preexec_fn=limit_files).start()


async def test_file_size_limit_refuses_ingest_with_a_json_error_and_recovers_when_lifted(tmp_path: Path) -> None:
    proc = start_with_file_size_limit(tmp_path / "sentra.db", write_config(tmp_path), 2 * 1024 * 1024)

    def lift() -> None:
        psutil.Process(proc.process.pid).rlimit(psutil.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    try:
        figures = await check_refusal_and_recovery(proc, lift, (503, 507))
    finally:
        assert proc.terminate() == 0, proc.stderr
    assert integrity(tmp_path / "sentra.db") == "ok"
    record_figures("disk_full", {"file_size_limit": figures})
