"""WAL checkpoints beside the commits: a connection and thread of their own, so no commit waits for the copy.

A PASSIVE checkpoint copies committed pages from the WAL into the database file while the writer goes on
appending to the WAL. The WAL starts over only when a commit begins with every frame copied, which passes
beside a busy writer rarely see; once the WAL has grown past `restart_bytes`, the store copies what is left
between two commits (a short pass, as the bulk is already copied) and the next commit starts it over.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("sentra.store")
# Each WAL frame is a page and its 24-byte header.
FRAME_HEADER = 24


class Checkpointer:
    """Runs one PASSIVE checkpoint at a time in its own thread; `restart_due` once the WAL outgrew its bound."""

    def __init__(self, path: Path, restart_bytes: int) -> None:
        self.path = path
        self.restart_bytes = restart_bytes
        self.restart_due = False
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pass: asyncio.Task[None] | None = None
        self._frame_size = 4096 + FRAME_HEADER

    async def open(self) -> None:
        """Open the checkpoint connection in its thread."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentra-checkpoint")
        await self._in_thread(self._connect)

    async def close(self) -> None:
        """Wait for a pass in progress, then close the connection and stop the thread."""
        if self._pass is not None:
            await self._pass
            self._pass = None
        if self._executor is not None:
            await self._in_thread(self._disconnect)
            self._executor.shutdown(wait=True)
            self._executor = None

    def start(self) -> None:
        """Begin a pass unless one is running; it never holds up a commit."""
        if self._executor is not None and (self._pass is None or self._pass.done()):
            self._pass = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            frames = await self._in_thread(self._checkpoint)
        except sqlite3.Error as exc:
            # The next pass copies these pages too; a failing disk shows up in the commits themselves.
            log.warning("WAL checkpoint failed: %s", exc)
            return
        if frames * self._frame_size >= self.restart_bytes:
            self.restart_due = True

    async def _in_thread(self, work: Callable[[], T]) -> T:
        assert self._executor is not None, "checkpointer is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._frame_size = int(conn.execute("PRAGMA page_size").fetchone()[0]) + FRAME_HEADER
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _checkpoint(self) -> int:
        """One PASSIVE pass; the number of frames in the WAL (SQLite answers busy, WAL frames, frames copied)."""
        assert self._conn is not None, "checkpointer is not open"
        _busy, frames, _copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames)
