"""CPU and memory of processes and of the machine, read from /proc (Linux), without third-party packages.

A `CpuWindow` takes a snapshot when it starts and one when it stops and reports, for each named group of
processes, the cores used over the window (1.0 = one core busy all the time), the busiest single thread
(an event loop saturates at ~1.0 however many cores the machine has) and the machine's busy share.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

TICKS = os.sysconf("SC_CLK_TCK")
HOT = 0.8  # a thread this busy is an event loop at its limit (the rest goes to the kernel and waits)
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_ticks(path: str) -> int:
    """utime + stime of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat file, in clock ticks."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError:
        return 0
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds the processes used so far, user and system."""
    return sum(_stat_ticks(f"/proc/{pid}/stat") for pid in pids) / TICKS


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from every thread's children list)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(children(current))
    return pids


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except OSError:
        return 0


def tree_rss(pid: int) -> int:
    """Resident memory of `pid` and its descendants, in bytes."""
    return sum(rss_bytes(p) for p in tree(pid))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot; iowait counts as idle."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return total - idle, total


def _thread_ticks(pids: list[int]) -> dict[tuple[int, int], int]:
    ticks: dict[tuple[int, int], int] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            ticks[(pid, int(tid))] = _stat_ticks(f"/proc/{pid}/task/{tid}/stat")
    return ticks


@dataclass
class GroupUse:
    """CPU used by one group of processes over a window."""

    cores: float
    busiest_thread: float
    processes: int


@dataclass
class CpuWindow:
    """Snapshots of named process groups; `stop()` returns their CPU use over the window."""

    groups: dict[str, list[int]]
    started: float = 0.0
    _threads: dict[str, dict[tuple[int, int], int]] = field(default_factory=dict)
    _machine: tuple[int, int] = (0, 0)
    _reaped: float = 0.0

    def start(self) -> CpuWindow:
        """Take the first snapshot (process lists are expanded to their descendants now, in group order)."""
        claimed: set[int] = set()
        expanded: dict[str, list[int]] = {}
        for name, pids in self.groups.items():
            # The servers may be children of the load tool: a process belongs to the first group naming it.
            members = {p for pid in pids for p in tree(pid)} - claimed
            claimed |= members
            expanded[name] = sorted(members)
        self.groups = expanded
        self._threads = {name: _thread_ticks(pids) for name, pids in self.groups.items()}
        self._machine = machine_ticks()
        self._reaped = _reaped_children()
        self.started = time.monotonic()
        return self

    def stop(self) -> dict[str, object]:
        """CPU per group (cores, busiest thread) and the machine's busy share over the window."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        busy, total = machine_ticks()
        report: dict[str, object] = {
            "seconds": round(elapsed, 3),
            "machine_busy": round((busy - self._machine[0]) / max(total - self._machine[1], 1), 3),
        }
        used = 0.0
        for name, pids in self.groups.items():
            before = self._threads.get(name, {})
            after = _thread_ticks(pids)
            deltas = [(ticks - before.get(key, 0)) / TICKS for key, ticks in after.items()]
            if name == "load":
                # Children that ran and exited inside the window (wrk) are only visible through rusage.
                deltas.append(_reaped_children() - self._reaped)
            use = GroupUse(
                cores=round(sum(deltas) / elapsed, 3),
                busiest_thread=round(max(deltas, default=0) / elapsed, 3),
                processes=len(pids),
            )
            report[name] = {"cores": use.cores, "busiest_thread": use.busiest_thread, "processes": use.processes}
            used += use.cores
        busy_cores = float(report["machine_busy"]) * (os.cpu_count() or 1)  # type: ignore[arg-type]
        report["other_cores"] = round(max(0.0, busy_cores - used), 3)
        return report


def _reaped_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verdict(cpu: dict[str, object], *, paced: bool = False) -> tuple[str, bool]:
    """Which side limited a run, and whether its figure is only a lower bound for the server.

    An event loop is saturated when its busiest thread is near one core; the machine is saturated when
    its cores are near busy, in which case server and load tool were competing for CPU. CPU used by
    other processes of the machine (not the server, not the load tool) also makes a figure a lower bound.
    """
    server, load = cpu["server"], cpu["load"]
    assert isinstance(server, dict) and isinstance(load, dict)
    machine = float(cpu["machine_busy"])  # type: ignore[arg-type]
    other = float(cpu.get("other_cores", 0.0))  # type: ignore[arg-type]
    server_hot = server["busiest_thread"] >= HOT
    load_hot = load["busiest_thread"] >= HOT
    machine_full = machine >= 0.93
    parts = [name for name, hot in (("server", server_hot), ("load tool", load_hot)) if hot]
    if not parts:
        if paced:
            parts = ["none (paced)"]
        elif machine_full:
            parts = ["machine (all cores busy)"]
        else:
            parts = ["neither saturated (latency-bound)"]
    lower = load_hot or (machine_full and not server_hot and not paced)
    if other >= 0.25:
        parts.append("other processes")  # their CPU is in other_cores
        lower = True
    return " + ".join(parts), lower
