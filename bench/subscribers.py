"""Subscriber processes: each opens its share of SSE connections and counts what arrives.

The publisher runs in the parent, so its pacing does not wait behind the parsing of subscribers. Parent
and child speak over a multiprocessing pipe: open -> ready, expect -> result, close -> closed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from wire import SseSubscriber, Tally

OPEN_CONCURRENCY = 256
OPEN_TIMEOUT = 60.0


def raise_fd_limit(wanted: int = 65536) -> None:
    """Allow many sockets in this process (root may raise the hard limit too)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return
        except (ValueError, OSError):
            continue


def use_uvloop() -> str:
    """Install uvloop's event loop policy if it is available; returns the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


@dataclass
class ChildSpec:
    """What one subscriber process opens: (channel, request bytes) per connection."""

    host: str
    port: int
    streams: list[tuple[str, bytes]]
    check_seq: bool = False
    strict: str = ""
    resume: bool = False


def child_main(conn: Connection, spec: ChildSpec) -> None:
    """Entry point of a subscriber process."""
    raise_fd_limit()
    use_uvloop()
    asyncio.run(_child(conn, spec))


async def _child(conn: Connection, spec: ChildSpec) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    subs: list[SseSubscriber] = []
    while True:
        # A thread waits on the pipe: an event loop would make its descriptor non-blocking, and large
        # messages (the latencies) would then fail half-written.
        message = await loop.run_in_executor(None, conn.recv)
        if message[0] == "open":
            conn.send(("ready", await _open(spec, tally, subs)))
        elif message[0] == "expect":
            _, published, drain, stall = message
            conn.send(("result", await _drain(subs, tally, published, drain, stall)))
        elif message[0] == "close":
            started = time.monotonic()
            for sub in subs:
                sub.close()
            if subs:
                await asyncio.wait([asyncio.ensure_future(sub.closed) for sub in subs], timeout=10)
            conn.send(("closed", time.monotonic() - started))
            return


async def _open(spec: ChildSpec, tally: Tally, subs: list[SseSubscriber]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    errors: list[str] = []
    started = time.monotonic()

    async def open_one(channel: str, request: bytes) -> None:
        async with gate:
            try:
                _, sub = await loop.create_connection(
                    lambda: SseSubscriber(
                        request,
                        tally,
                        channel=channel,
                        check_seq=spec.check_seq,
                        strict=spec.strict,
                        resume=(spec.host, spec.port) if spec.resume else None,
                    ),
                    spec.host,
                    spec.port,
                )
                status = await asyncio.wait_for(sub.ready, OPEN_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            subs.append(sub)
            if status != 200:
                errors.append(sub.error)

    await asyncio.gather(*(open_one(channel, request) for channel, request in spec.streams))
    return {
        "seconds": time.monotonic() - started,
        "opened": sum(1 for sub in subs if sub.status == 200),
        "failed": len(spec.streams) - sum(1 for sub in subs if sub.status == 200),
        "errors": errors[:5],
    }


async def _drain(
    subs: list[SseSubscriber], tally: Tally, published: dict[str, dict[int, int]], drain: float, stall: float
) -> dict[str, Any]:
    """Wait until every subscriber has every published line, or nothing arrived for `stall` seconds, or
    `drain` seconds passed."""
    loop = asyncio.get_running_loop()
    live = [sub for sub in subs if sub.status == 200]
    for sub in live:
        sub.expect(published.get(sub.channel, {}))
    deadline = loop.time() + drain
    last_total, last_change = -1, loop.time()
    while loop.time() < deadline:
        waiting = [sub for sub in live if not sub.complete() and not sub.ended]
        if not waiting:
            break
        total = sum(sub.count + sub.resumes for sub in live)  # a resumed stream is progress too
        if total != last_total:
            last_total, last_change = total, loop.time()
        elif loop.time() - last_change > stall:
            break
        await asyncio.sleep(0.05)
    return {
        "subscribers": len(live),
        "delivered": sum(sub.count for sub in live),
        "expected": sum(sum(published.get(sub.channel, {}).values()) for sub in live),
        "lost": sum(sub.lost() for sub in live),
        "gaps": sum(sub.gaps for sub in live),
        "disorder": sum(sub.disorder for sub in live),
        "repeats": sum(sub.repeats for sub in live),
        "seq_errors": sum(sub.seq_errors for sub in live),
        "cut": sum(sub.cuts for sub in live),
        "resumed": sum(sub.resumes for sub in live),
        "errors": [sub.error for sub in live if sub.error][:5],
        "events": sum(sub.events for sub in live),
        "strict_count": sum(sub.strict_count for sub in live),
        "first_recv": tally.first_recv,
        "last_recv": tally.last_recv,
        "latencies": tally.latencies.tobytes(),
    }


def _receive(pipe: Connection, timeout: float) -> Any:
    """The payload of the child's next answer (in a thread); TimeoutError if none comes in time."""
    if not pipe.poll(timeout):
        raise TimeoutError(f"a subscriber process did not answer within {timeout:.0f} s")
    return pipe.recv()[1]


class SubscriberPool:
    """Subscriber processes driven from the parent's event loop."""

    def __init__(self, host: str, port: int, streams: list[tuple[str, bytes]], *, procs: int = 1, **options: Any):
        context = multiprocessing.get_context("spawn")
        self.procs = []
        self.pipes: list[Connection] = []
        procs = max(1, min(procs, len(streams) or 1))
        for index in range(procs):
            parent, child = context.Pipe()
            spec = ChildSpec(host, port, streams[index::procs], **options)
            process = context.Process(target=child_main, args=(child, spec), daemon=True)
            process.start()
            self.procs.append(process)
            self.pipes.append(parent)

    @property
    def pids(self) -> list[int]:
        """The subscriber processes' ids."""
        return [p.pid for p in self.procs if p.pid is not None]

    async def _ask(self, message: tuple[Any, ...], timeout: float) -> list[Any]:
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            pipe.send(message)
        answers = [loop.run_in_executor(None, _receive, pipe, timeout) for pipe in self.pipes]
        return list(await asyncio.gather(*answers))

    async def open(self) -> dict[str, Any]:
        """Open every connection; returns the wall time and counts."""
        started = time.monotonic()
        answers = await self._ask(("open",), OPEN_TIMEOUT + 30)
        return {
            "seconds": time.monotonic() - started,
            "opened": sum(a["opened"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "errors": [e for a in answers for e in a["errors"]][:5],
        }

    async def collect(
        self, published: dict[str, dict[int, int]], *, drain: float = 15.0, stall: float = 5.0
    ) -> list[dict[str, Any]]:
        """Tell the children what was published and gather their tallies once they drained."""
        return await self._ask(("expect", published, drain, stall), drain + 30)

    async def close(self) -> float:
        """Close every connection and end the children; returns the seconds the close took."""
        try:
            seconds = max(await self._ask(("close",), 30))
        finally:
            for process in self.procs:
                process.join(5)
                if process.is_alive():
                    process.kill()
        return float(seconds)
