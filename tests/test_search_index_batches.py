"""The SQLite word index's batches: fields read once per distinct object (and read again once that memory is
emptied), batches of one agent numbered by seq, batches of several by time; every line found as the rule says."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from typing import Any

import httpx
import pytest
from conftest import RunningServer, ServerFactory, post_lines

from sentra.storage import search_index, sqlite_search
from sentra.storage.words import parse_query

ROUTES = ("/api/v1/items", "/api/v1/orders", "/healthz")


def line(n: int) -> dict[str, Any]:
    """An agent line whose fields repeat (route, status) or not (a request id), some with values SQL leaves to
    Python (a number past 64 bits, a non-ASCII word), some long."""
    fields: dict[str, Any] = {"route": ROUTES[n % 3], "status": 200 if n % 4 else 503}
    if n % 5 == 0:
        fields["request"] = f"req{n}"
    if n % 7 == 0:
        fields["big"] = 2**70
    if n % 11 == 0:
        fields["city"] = "Zürich"
    if n % 13 == 0:
        fields["body"] = "x" * 1200 + f" long{n}"  # longer than the index keeps texts of
    return {"message": f"GET {ROUTES[n % 3]} took {n}ms", **fields}


async def found(client: httpx.AsyncClient, q: str) -> list[tuple[str, int]]:
    """Every (agent, seq) a search finds, newest first."""
    response = await client.get("/api/search", params={"q": q, "limit": 1000})
    assert response.status_code == 200, response.text
    return [(hit["agent"], hit["seq"]) for hit in response.json()["lines"]]


async def test_lines_of_one_and_of_several_agents_are_found_by_their_field_values(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small memory of field texts, so that it is emptied several times in this test.
    monkeypatch.setattr(sqlite_search, "FIELD_TEXTS", 4)
    server: RunningServer = await start_server()
    sent: list[tuple[str, int, dict[str, Any]]] = []
    async with server.client("alice") as alice:
        for batch in range(6):
            agents = ["one"] if batch % 2 == 0 else ["one", "two"]
            for agent in agents:
                lines = [line(batch * 40 + n) for n in range(20)]
                answer = await post_lines(alice, agent, lines)
                first = answer["first_seq"]
                sent += [(agent, first + i, item) for i, item in enumerate(lines)]
            # A search waits for the index: each round is a batch (or two) of its own.
            assert await found(alice, "took")
        for q in ("orders", "503", "req45", "zürich", "1180591620717411303424", '"v1 items"', "healthz 200", "long13"):
            terms = parse_query(q)
            expected = [
                (agent, seq)
                for agent, seq, item in sent
                if terms.matches(item["message"], {k: v for k, v in item.items() if k != "message"})
            ]
            assert sorted(await found(alice, q)) == sorted(expected), q
            assert expected, q
        # Newest first across agents: the last round's lines of "two" came after those of "one".
        newest = await found(alice, "took")
        assert newest[0] == ("two", sent[-1][1])
        assert newest[20] == ("one", sent[-21][1])


async def test_the_index_catches_up_on_a_burst_without_waiting_for_its_interval(
    start_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Passes of one 2-line batch and an interval longer than the test: 100 lines take fifty passes, which follow
    # one another when a pass leaves lines behind (they used to wait for the interval, or for something to wake
    # the index: 0.25 s a pass here, 12 s for the fifty).
    monkeypatch.setattr(search_index, "BATCH_LINES", 2)
    monkeypatch.setattr(search_index, "LIVE_BATCHES", 1)
    monkeypatch.setattr(search_index, "INDEX_INTERVAL", 60.0)
    server: RunningServer = await start_server()
    async with server.client("alice") as alice:
        await post_lines(alice, "burst", [{"message": f"line {n}"} for n in range(100)])

    def indexed() -> int:
        with closing(sqlite3.connect(f"file:{sqlite_search.search_path(server.db)}?mode=ro", uri=True)) as index:
            return int(index.execute("SELECT count(*) FROM line_refs").fetchone()[0])

    deadline = time.monotonic() + 10
    while indexed() < 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert indexed() == 100
