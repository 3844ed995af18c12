"""GET /api/agents/{id}/volume: a run's lines per level in equal time buckets, from the volume index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from conftest import RunningServer, error_of, post_lines

T0 = 1_800_000_000  # a whole minute: 1800000000 % 60 == 0


def total(buckets: list[dict[str, Any]], level: str | None = None) -> int:
    """Lines in the buckets (of one level, or all)."""
    return sum(n for bucket in buckets for name, n in bucket["counts"].items() if level in (None, name))


async def volume(client: httpx.AsyncClient, agent_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/api/agents/{agent_id}/volume", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["buckets"])


async def spread_run(client: httpx.AsyncClient) -> None:
    """100 s of a run: an INFO line every second, a WARNING every 10 s, two ERRORs at 50 s and one CRITICAL."""
    lines: list[Any] = [{"message": f"tick {n}", "ts": T0 + n + 0.5} for n in range(100)]
    lines += [{"message": f"warn {n}", "ts": T0 + n, "level": "warning"} for n in range(0, 100, 10)]
    lines += [
        {"message": "bad", "ts": T0 + 50.25, "level": "error"},
        {"message": "worse", "ts": T0 + 50.75, "level": "error"},
    ]
    lines.append({"message": "fatal", "ts": T0 + 99.9, "level": "critical"})
    await post_lines(client, "run", lines)


async def test_buckets_cover_the_run_and_add_up_to_its_lines(alice: httpx.AsyncClient) -> None:
    await spread_run(alice)
    buckets = await volume(alice, "run", buckets=10)
    assert len(buckets) == 10
    assert buckets[0]["start"] == T0 and buckets[-1]["end"] == T0 + 100
    assert all(b["end"] - b["start"] == pytest.approx(10) for b in buckets)
    assert all(set(b["counts"]) == {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} for b in buckets)
    assert [b["counts"]["INFO"] for b in buckets] == [10] * 10
    assert [b["counts"]["WARNING"] for b in buckets] == [1] * 10
    assert [b["counts"]["ERROR"] for b in buckets] == [0] * 5 + [2] + [0] * 4
    assert buckets[-1]["counts"]["CRITICAL"] == 1
    agent = (await alice.get("/api/agents/run")).json()
    assert total(buckets) == agent["line_count"] == 113
    for level, count in agent["level_counts"].items():
        assert total(buckets, level) == count


async def test_default_is_60_buckets_and_500_is_the_most(alice: httpx.AsyncClient) -> None:
    await spread_run(alice)
    assert len(await volume(alice, "run")) == 60
    assert total(await volume(alice, "run", buckets=500)) == 113
    assert len(await volume(alice, "run", buckets=1)) == 1


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"buckets": "501"}, "at most 500"),
        ({"buckets": "0"}, "buckets"),
        ({"buckets": "ten"}, "buckets"),
        ({"since": "yesterday"}, "since"),
        ({"until": "not a time"}, "until"),
        ({"since": str(T0 + 50), "until": str(T0 + 10)}, "later than"),
    ],
)
async def test_bad_arguments_are_400_saying_what_is_wrong(
    alice: httpx.AsyncClient, params: dict[str, str], words: str
) -> None:
    await spread_run(alice)
    response = await alice.get("/api/agents/run/volume", params=params)
    assert response.status_code == 400
    assert words in error_of(response)["message"]


async def test_since_and_until_narrow_the_span(alice: httpx.AsyncClient) -> None:
    await spread_run(alice)
    buckets = await volume(alice, "run", buckets=5, since=str(T0 + 40), until=str(T0 + 60))
    assert buckets[0]["start"] == T0 + 40 and buckets[-1]["end"] == T0 + 60
    assert [b["counts"]["ERROR"] for b in buckets] == [0, 0, 2, 0, 0]
    assert total(buckets, "INFO") == 20
    # ISO 8601, as the other endpoints take it.
    since, until = (datetime.fromtimestamp(T0 + offset, UTC).isoformat() for offset in (40, 60))
    iso = await volume(alice, "run", buckets=5, since=since, until=until)
    assert iso == buckets


async def test_a_long_run_is_counted_by_the_minute(alice: httpx.AsyncClient) -> None:
    # Six hours, a line every 30 s: buckets of 6 minutes read the per-minute counts.
    await post_lines(alice, "long", [{"message": "x", "ts": T0 + 30 * n} for n in range(720)])
    buckets = await volume(alice, "long", buckets=60, since=str(T0), until=str(T0 + 6 * 3600))
    assert [b["counts"]["INFO"] for b in buckets] == [12] * 60
    assert total(await volume(alice, "long", buckets=7)) == 720


async def test_an_agent_without_lines_has_no_buckets(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents", json={"id": "empty"})
    assert await volume(alice, "empty") == []
    since_until = await volume(alice, "empty", buckets=3, since=str(T0), until=str(T0 + 3))
    assert [total([b]) for b in since_until] == [0, 0, 0]


async def test_new_lines_show_up_live(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "live", [{"message": "a", "ts": T0}])
    await post_lines(alice, "live", [{"message": "b", "ts": T0 + 9, "level": "error"}])
    buckets = await volume(alice, "live", buckets=2)
    assert [(b["counts"]["INFO"], b["counts"]["ERROR"]) for b in buckets] == [(1, 0), (0, 1)]


async def test_ownership_as_elsewhere(server: RunningServer, alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    await spread_run(alice)
    assert (await bob.get("/api/agents/run/volume")).status_code == 403
    assert (await alice.get("/api/agents/nobody/volume")).status_code == 404
    async with server.client(None) as anonymous:
        assert (await anonymous.get("/api/agents/run/volume")).status_code == 401
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("root", scope="admin")) as admin:
        answer = await admin.get("/api/agents/run/volume")
    assert answer.status_code == 200 and total(answer.json()["buckets"]) == 113


async def test_a_share_link_reads_its_runs_volume_and_no_other(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await spread_run(alice)
    await post_lines(alice, "other", ["not shared"])
    link = (await alice.post("/api/agents/run/share", json={"ttl": "1h"})).json()
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {link['token']}"}) as shared:
        assert total(await volume(shared, "run")) == 113
        assert (await shared.get("/api/agents/run")).json()["level_counts"]["ERROR"] == 2
        assert (await shared.get("/api/agents/other/volume")).status_code == 403
