"""The highest rate a server sustains: paced fan-out at rising rates until one is not held or not delivered.

Publishing back to back (scenario 2) measures how fast the publishers get answers. When a server answers
faster than the subscriber process reads, lines queue in the socket buffers and the latency measured is that
queue's, not the server's. Here every server is fed open-loop on one ladder of rates (RUNG x 1.2^k lines/s),
starting near 90% of its own back-to-back rate, and a rate counts as sustained when:

- it is held: at least 99% of its lines went out on schedule (a line waits when every publishing connection
  still awaits an answer);
- it is delivered: the subscribers received at least 98% of the deliveries per second the rate asks for,
  from the first send to the last receipt (a queue growing in front of them stretches the last receipt past
  the end of publishing: 2% is 80 ms of a 4 s step);
- nothing was lost, refused or cut off, and nothing arrived out of order.

The rates go up one rung at a time until one is not sustained (or down, if the first one is not). The
scenario's figures are those of the highest sustained rate; every step's figures are kept in `steps`. Each
server starts near its own rate, so after every server has climbed its ladder, each is also run once at the
others' highest sustained rates that it did not try (`at_rates`, marked `compared`): every run then compares
the servers at the same rates, not only at their own best.
"""

from __future__ import annotations

import math
from typing import Any

from load import fanout
from wire import Target

RUNG = 250.0  # lines/s of the ladder's lowest rung
FACTOR = 1.2  # each rung is 20% above the one below
START_SHARE = 0.9  # the first rung tried: at or below this share of the back-to-back rate
HELD = 0.99  # share of the scheduled lines that must go out on time
DELIVERED = 0.98  # share of the asked deliveries per second that must arrive
MAX_STEPS = 10
STEP_KEYS = (
    "rate",
    "sustained",
    "why",
    "publish_rate",
    "deliveries_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "lost",
    "cut",
)


def rung(index: int) -> float:
    """The ladder's rate at `index` (0 is RUNG lines/s)."""
    return round(RUNG * FACTOR**index, 1)


def rung_below(rate: float) -> int:
    """The index of the highest rung at or below `rate` (0 if `rate` is below the ladder)."""
    if rate <= RUNG:
        return 0
    return max(0, math.floor(math.log(rate / RUNG, FACTOR) + 1e-9))


def judge(result: dict[str, Any], rate: float, window: float, subscribers: int) -> tuple[bool, str]:
    """Whether one paced step sustained `rate` (lines/s over `window` seconds, each line to `subscribers`),
    and if not, why, in words."""
    if "error" in result:
        return False, str(result["error"])
    faults = [
        (result.get("post_errors", 0), "POSTs refused or failed"),
        (result.get("lost", 0), "lines lost"),
        (result.get("cut", 0), "streams cut off"),
        (result.get("disorder", 0) + result.get("repeats", 0), "lines out of order or twice"),
    ]
    for count, what in faults:
        if count:
            return False, f"{count:,} {what}"
    scheduled = int(rate * window)
    published = result.get("published", 0)
    if published < HELD * scheduled or result.get("publish_rate", 0) < HELD * rate:
        return False, (f"rate not held: {published:,} of {scheduled:,} lines at {result.get('publish_rate', 0):,.0f}/s")
    asked = rate * subscribers
    got = result.get("deliveries_per_s", 0.0)
    if got < DELIVERED * asked:
        return False, f"not delivered: {got:,.0f} of {asked:,.0f} deliveries/s (a queue built up before the readers)"
    return True, ""


async def highest_sustained(
    target: Target,
    server_pids: list[int],
    *,
    tag: str,
    subscribers: int,
    publishers: int,
    window: float,
    probe: float,
    max_steps: int = MAX_STEPS,
) -> dict[str, Any]:
    """Step the paced rate over the ladder (1 channel x `subscribers`); the highest sustained step's figures,
    `sustained_rate`, the rate above it that was not (`next_rate`, `next_why`) and every step in `steps`."""
    probed = await fanout(
        target, server_pids, channels=[f"{tag}p"], subscribers=subscribers, publishers=8, duration=probe
    )
    index = rung_below(START_SHARE * probed.get("publish_rate", 0.0))
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None  # the lowest rate tried that was not sustained
    # Up from the first rate until one fails, or down until one holds: no rate is tried twice.
    while len(steps) < max_steps and index >= 0:
        rate = rung(index)
        result = await _step(target, server_pids, f"{tag}s{index}", subscribers, publishers, rate, window)
        steps.append({key: result.get(key) for key in STEP_KEYS})
        if result["sustained"]:
            best = result
            if failed is not None:
                break
            index += 1
        else:
            failed = result
            if best is not None:
                break
            index -= 1
    out: dict[str, Any] = {"sustained_rate": 0.0}
    if best is not None:
        out = {key: value for key, value in best.items() if key not in ("rate", "sustained", "why")}
        out["sustained_rate"] = best["rate"]
    if failed is not None:
        out["next_rate"] = failed["rate"]
        out["next_why"] = failed["why"]
    out["probe_rate"] = probed.get("publish_rate", 0.0)
    # Lines lost and streams cut in any step, the probe included: the scenario's "nothing lost" figure.
    out["lost_any_step"] = sum((step.get("lost") or 0) + (step.get("cut") or 0) for step in [probed, *steps])
    out["steps"] = steps
    return out


async def at_rates(
    target: Target,
    server_pids: list[int],
    *,
    tag: str,
    subscribers: int,
    publishers: int,
    window: float,
    rates: list[float],
) -> list[dict[str, Any]]:
    """One step at each of `rates` (other servers' highest sustained rates), judged as on the ladder and
    marked `compared`; they do not change the server's own highest sustained rate."""
    steps = []
    for number, rate in enumerate(rates):
        result = await _step(target, server_pids, f"{tag}c{number}", subscribers, publishers, rate, window)
        steps.append({key: result.get(key) for key in STEP_KEYS} | {"compared": True})
    return steps


async def _step(
    target: Target, server_pids: list[int], channel: str, subscribers: int, publishers: int, rate: float, window: float
) -> dict[str, Any]:
    """One paced fan-out step on a fresh channel, with its verdict (`rate`, `sustained`, `why`)."""
    result = await fanout(
        target,
        server_pids,
        channels=[channel],
        subscribers=subscribers,
        publishers=publishers,
        rate=rate,
        duration=window,
    )
    ok, why = judge(result, rate, window, subscribers)
    result.update(rate=rate, sustained=ok, why=why)
    return result
