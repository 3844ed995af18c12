"""Subscribers in C (sse_reader.c), driven as SubscriberPool drives its Python ones: open, collect, close.

The reader is compiled once per version of its source with the machine's C compiler (Debian's gcc) into a
cache directory; without a compiler the load tool falls back to its Python subscribers and says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from wire import MAX_RESUMES

SOURCE = Path(__file__).resolve().parent / "sse_reader.c"
CACHE = Path(tempfile.gettempdir()) / "sentra-bench"
OPEN_TIMEOUT = 90.0


def reader_binary() -> Path | None:
    """The compiled reader, built now if this version of the source was not yet; None without a compiler."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    path = CACHE / f"sse_reader-{digest}"
    if path.exists():
        return path
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(f".{time.monotonic_ns()}")
    # zlib (-lz) inflates the streams of a run whose subscribers ask for gzip (bench/run.py --gzip).
    command = [compiler, "-O2", "-o", str(building), str(SOURCE), "-lz"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr[-1000:]}")
    building.replace(path)
    return path


class CReaderPool:
    """One C reader process holding every stream (it needs a fraction of a core where Python needs several)."""

    def __init__(
        self, host: str, port: int, streams: list[tuple[str, bytes]], binary: Path, *, resume: bool = False
    ) -> None:
        self.host, self.port, self.binary = host, port, binary
        # Open a stream the server cut again from its last id, as EventSource (and wire.SseSubscriber) does.
        self.resumes = MAX_RESUMES if resume else 0
        self.channels: dict[str, int] = {}
        for channel, _ in streams:
            self.channels.setdefault(channel, len(self.channels))
        self.workdir = Path(tempfile.mkdtemp(prefix="sse-reader-"))
        with open(self.workdir / "requests", "wb") as out:
            for channel, request in streams:
                out.write(b"%d %d\n" % (self.channels[channel], len(request)) + request)
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pids(self) -> list[int]:
        """The reader's process id."""
        return [self.process.pid] if self.process is not None else []

    async def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the C reader exited ({await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def _say(self, text: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text.encode())
        await self.process.stdin.drain()

    async def open(self) -> dict[str, Any]:
        """Start the reader and open every stream; returns the wall time and counts."""
        self.process = await asyncio.create_subprocess_exec(
            str(self.binary),
            self.host,
            str(self.port),
            str(self.workdir / "requests"),
            str(self.workdir / "latencies"),
            str(self.resumes),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return await self._answer(OPEN_TIMEOUT)

    async def collect(
        self, published: dict[str, dict[int, int]], *, drain: float = 15.0, stall: float = 5.0
    ) -> list[dict[str, Any]]:
        """Tell the reader what was published and take its tally once it drained."""
        lines = [f"expect {drain} {stall}\n"]
        for channel, counts in published.items():
            if channel in self.channels:
                lines += [f"{self.channels[channel]} {pub} {count}\n" for pub, count in counts.items()]
        await self._say("".join(lines) + "end\n")
        tally = await self._answer(drain + 30)
        tally["latencies"] = (self.workdir / "latencies").read_bytes()
        return [tally]

    async def close(self) -> float:
        """Close every stream and end the reader; returns the seconds the close took."""
        try:
            if self.process is None or self.process.returncode is not None:
                return 0.0
            await self._say("close\n")
            seconds = float((await self._answer(30))["closed"])
            await asyncio.wait_for(self.process.wait(), 10)
            return seconds
        finally:
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            shutil.rmtree(self.workdir, ignore_errors=True)
