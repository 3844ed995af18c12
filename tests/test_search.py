"""GET /api/search on each storage backend: which lines match (sentra.storage.words' rule, the same as history's and
the streams' `q`), its filters, paging while lines arrive, who sees what, removals, and the index built in the
background for a database made without one."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import RunningServer, ServerFactory, make_token, open_stream, post_lines, read_lines, stream_path
from pg_service import PostgresServer

from sentra.lines import NewLine
from sentra.storage.base import SearchQuery
from sentra.storage.postgres import PostgresStore
from sentra.storage.words import field_texts, parse_query, words_of

Found = list[tuple[str, int]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """The settings of one storage backend: SQLite, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield {}
        return
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"sentra_search_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.url, timeout=10)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield {"storage.url": postgres.database_url(name)}
    admin = await asyncpg.connect(postgres.url, timeout=10)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def searched(start_server: ServerFactory, backend: dict[str, Any]) -> RunningServer:
    """A server on the backend under test."""
    return await start_server(**backend)


async def search(client: httpx.AsyncClient, q: str, **params: Any) -> dict[str, Any]:
    """One page of GET /api/search."""
    response = await client.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def found(client: httpx.AsyncClient, q: str, **params: Any) -> Found:
    """(agent, seq) of the first page's lines, newest first."""
    return [(line["agent"], line["seq"]) for line in (await search(client, q, **params))["lines"]]


async def eventually_found(client: httpx.AsyncClient, q: str, expected: Found, **params: Any) -> None:
    """Search until the answer is `expected` (2 s at most: a line may take that long to be searchable)."""
    deadline = time.monotonic() + 2.0
    while (answer := await found(client, q, **params)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert answer == expected


async def test_a_word_is_found_in_the_message_or_any_field_value(searched: RunningServer) -> None:
    async with searched.client("alice") as alice:
        await post_lines(
            alice,
            "shop",
            [
                "Payment failed: card declined",
                {"message": "GET done", "url": "https://api.stripe.com/v1/charges", "status": 402},
                {"message": "tool call", "args": {"items": [{"name": "refund_tool"}]}, "ok": True},
                {"message": "keys are not searched", "declined": "no"},
            ],
        )
        assert await found(alice, "declined") == [("shop", 1)]
        assert await found(alice, "stripe") == [("shop", 2)]
        assert await found(alice, "402") == [("shop", 2)]
        assert await found(alice, "refund") == [("shop", 3)]
        assert await found(alice, "true") == [("shop", 3)]
        assert await found(alice, "searched no") == [("shop", 4)]
        assert await found(alice, "url") == []


async def test_words_phrases_prefixes_and_case_follow_the_readme(searched: RunningServer) -> None:
    async with searched.client("alice") as alice:
        await post_lines(
            alice,
            "words",
            [
                "Card DECLINED by bank",  # 1
                "declined card",  # 2
                "card_declined again",  # 3
                "Hauptstraße 5",  # 4
                "redeclined",  # 5
                {"message": "card", "why": "declined"},  # 6
            ],
        )
        assert await found(alice, "declined") == [("words", 6), ("words", 3), ("words", 2), ("words", 1)]
        assert await found(alice, "DeClInEd card") == [("words", 6), ("words", 3), ("words", 2), ("words", 1)]
        assert await found(alice, '"card declined"') == [("words", 3), ("words", 1)]
        assert await found(alice, "card_declined") == [("words", 3), ("words", 1)]
        assert await found(alice, "declin") == []
        assert await found(alice, "declin*") == [("words", 6), ("words", 3), ("words", 2), ("words", 1)]
        assert await found(alice, "HAUPTSTRASSE") == [("words", 4)]
        assert await found(alice, "card_decl*") == [("words", 3), ("words", 1)]


async def test_level_agent_label_and_time_narrow_a_search(searched: RunningServer) -> None:
    now = time.time()
    async with searched.client("alice") as alice:
        await alice.post("/api/agents", json={"id": "web-1", "labels": {"team": "web", "env": "prod"}})
        await alice.post("/api/agents", json={"id": "web-2", "labels": {"team": "web", "env": "dev"}})
        await alice.post("/api/agents", json={"id": "ml-1", "labels": {"team": "ml"}})
        for agent_id in ("web-1", "web-2", "ml-1"):
            await post_lines(
                alice,
                agent_id,
                [
                    {"message": "timeout old", "level": "ERROR", "ts": now - 3600},
                    {"message": "timeout warn", "level": "WARNING", "ts": now - 60},
                    {"message": "timeout info", "level": "INFO", "ts": now},
                ],
            )
        assert len(await found(alice, "timeout")) == 9
        assert {seq for _, seq in await found(alice, "timeout", level="warning")} == {1, 2}
        assert {agent for agent, _ in await found(alice, "timeout", level="ERROR")} == {"web-1", "web-2", "ml-1"}
        assert {agent for agent, _ in await found(alice, "timeout", agent=["web-2", "ml-1"])} == {"web-2", "ml-1"}
        assert await found(alice, "timeout", agent="ml-1", level="error") == [("ml-1", 1)]
        assert {agent for agent, _ in await found(alice, "timeout", label="team=web")} == {"web-1", "web-2"}
        assert {agent for agent, _ in await found(alice, "timeout", label=["team=web", "env=prod"])} == {"web-1"}
        assert await found(alice, "timeout", label="team=none") == []
        recent = await found(alice, "timeout", since=str(now - 120))
        assert sorted(recent) == sorted((a, s) for a in ("web-1", "web-2", "ml-1") for s in (2, 3))
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 600))
        assert {seq for _, seq in await found(alice, "timeout", until=iso)} == {1}
        assert {seq for _, seq in await found(alice, "timeout", since=str(int((now - 120) * 1000)))} == {2, 3}


async def test_pages_have_no_gap_and_no_repeat_while_lines_keep_arriving(searched: RunningServer) -> None:
    async with searched.client("alice") as alice:
        for round_ in range(5):
            for agent_id in ("p-1", "p-2", "p-3"):
                await post_lines(alice, agent_id, [f"needle {round_}-{n}" for n in range(15)] + ["hay"] * 5)
        before = {(agent_id, seq) for agent_id in ("p-1", "p-2", "p-3") for seq in range(1, 101) if (seq - 1) % 20 < 15}
        seen: Found = []
        cursor = None
        for _ in range(20):
            params = {"limit": 17} if cursor is None else {"limit": 17, "cursor": cursor}
            page = await search(alice, "needle", **params)
            seen += [(line["agent"], line["seq"]) for line in page["lines"]]
            # Lines arrive between pages: they are newer than the first page, so no later page shows them.
            await post_lines(alice, "p-2", ["needle late", "hay late"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 225
        assert set(seen) == before
        for agent_id in ("p-1", "p-2", "p-3"):
            seqs = [seq for agent, seq in seen if agent == agent_id]
            assert seqs == sorted(seqs, reverse=True)  # newest first


async def test_another_users_lines_never_appear_and_an_admin_sees_every_users(searched: RunningServer) -> None:
    async with searched.client("alice") as alice, searched.client("bob") as bob:
        await post_lines(alice, "alices", ["secret plan"])
        await post_lines(bob, "bobs", ["secret recipe"])
        assert await found(alice, "secret") == [("alices", 1)]
        assert await found(bob, "secret") == [("bobs", 1)]
        refused = await bob.get("/api/search", params={"q": "secret", "agent": "alices"})
        assert refused.status_code == 403
        ticket = (await alice.post("/api/stream-tickets", json={"agent": "alices"})).json()["token"]
    async with searched.client(None, params={"token": ticket}) as ticketed:
        assert await found(ticketed, "secret") == [("alices", 1)]
    admin = make_token("root", scope="admin")
    async with searched.client(None, params={"token": admin}) as root:
        assert await found(root, "secret") == [("bobs", 1), ("alices", 1)]


async def test_a_deleted_agents_lines_are_gone_from_search_and_from_the_index(
    searched: RunningServer, backend: dict[str, Any]
) -> None:
    async with searched.client("alice") as alice:
        await post_lines(alice, "gone", ["vanishing act"] * 30)
        await post_lines(alice, "kept", ["vanishing act"])
        assert len(await found(alice, "vanishing")) == 31
        assert (await alice.delete("/api/agents/gone")).status_code == 204
        assert await found(alice, "vanishing") == [("kept", 1)]
        await post_lines(alice, "gone", ["vanishing again"])  # the same id, a new agent
        assert await found(alice, "vanishing") == [("gone", 1), ("kept", 1)]
    await eventually_indexed(searched, backend, 2)


@pytest.mark.slow  # waits for retention's timer
async def test_retention_removes_trimmed_lines_from_search(
    start_server: ServerFactory, backend: dict[str, Any]
) -> None:
    server = await start_server(**{"retention.max_lines_per_agent": 5, "retention.interval": "0.3s", **backend})
    async with server.client("alice") as alice:
        await post_lines(alice, "long", [f"line number {n}" for n in range(1, 21)])
        deadline = time.monotonic() + 5
        while (await alice.get("/api/agents/long")).json()["first_seq"] != 16 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [seq for _, seq in await found(alice, "number")] == [20, 19, 18, 17, 16]
    await eventually_indexed(server, backend, 5)


async def eventually_indexed(server: RunningServer, backend: dict[str, Any], count: int) -> None:
    """Wait (2 s at most) until the index holds `count` lines, as a removal leaves it."""
    deadline = time.monotonic() + 2.0
    while (held := await index_size(server, backend)) != count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert held == count


async def index_size(server: RunningServer, backend: dict[str, Any]) -> int:
    """How many lines the index holds."""
    if "storage.url" in backend:
        conn = await asyncpg.connect(backend["storage.url"], timeout=10)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM line_words"))
        finally:
            await conn.close()
    with sqlite3.connect(f"file:{server.db}-search?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM line_refs").fetchone()[0])


async def test_a_line_is_searchable_as_soon_as_its_post_is_answered(searched: RunningServer) -> None:
    async with searched.client("alice") as alice:
        for n in range(5):
            started = time.monotonic()
            await post_lines(alice, "fresh", [f"fresh{n} line"])
            assert await found(alice, f"fresh{n}") == [("fresh", n + 1)]
            assert time.monotonic() - started < 2.0


QUERIES = ["error", "ERROR timeout", '"disk full"', "disk_full", "tim*", "stripe", "404", "nothing-here"]


async def test_history_q_and_stream_q_agree_with_search(searched: RunningServer) -> None:
    lines: list[Any] = [
        {"message": "Error: timeout after 30 s", "level": "ERROR"},
        "disk full on /var",
        "full disk",
        {"message": "GET", "url": "https://api.stripe.com", "status": 404},
        "error_rate=0.1 timer started",
        {"message": "quiet", "note": "disk-full soon"},
    ]
    async with searched.client("alice") as alice:
        await post_lines(alice, "same", lines)
        for q in QUERIES:
            searched_seqs = sorted(seq for _, seq in await found(alice, q, agent="same"))
            history = (await alice.get("/api/agents/same/logs", params={"q": q})).json()["lines"]
            assert [line["seq"] for line in history] == searched_seqs, q
            before = (await alice.get("/api/agents/same/logs", params={"q": q, "before": 7, "limit": 2})).json()
            assert [line["seq"] for line in before["lines"]] == searched_seqs[-2:], q
        for q in QUERIES[:6]:
            async with open_stream(alice, stream_path("same"), q=q, after=0) as stream:
                # The stream replays what matches, then follows live lines with the same test.
                await post_lines(alice, "same", lines)
                expected = sorted(seq for _, seq in await found(alice, q, agent="same", limit=1000))
                events = await read_lines(stream, len(expected))
                assert [line["seq"] for event in events for line in event.json()["lines"]] == expected, q


async def test_a_coloured_word_is_found_by_search_and_history_q(searched: RunningServer) -> None:
    async with searched.client("alice") as alice:
        await post_lines(
            alice,
            "pytest",
            [
                "\x1b[31mFAILED\x1b[0m tests/test_pay.py::test_refund - AssertionError",  # 1
                "\x1b[32mPASSED\x1b[0m tests/test_pay.py::test_charge",  # 2
                {"message": "summary", "tail": "\x1b[1;31m1 failed\x1b[0m, \x1b[32m1 passed\x1b[0m"},  # 3
            ],
        )
        assert await found(alice, "failed") == [("pytest", 3), ("pytest", 1)]
        assert await found(alice, "FAILED test_pay") == [("pytest", 1)]
        assert await found(alice, '"failed tests"') == [("pytest", 1)]
        assert await found(alice, "pass*") == [("pytest", 3), ("pytest", 2)]
        assert await found(alice, "31mfailed") == []
        for q, seqs in (("failed", [1, 3]), ("passed test_charge", [2]), ("31mfailed", [])):
            history = (await alice.get("/api/agents/pytest/logs", params={"q": q})).json()["lines"]
            assert [line["seq"] for line in history] == seqs, q


@pytest.mark.slow  # starts the server twice
async def test_an_index_of_older_words_is_built_again(
    start_server: ServerFactory, backend: dict[str, Any], tmp_path: Path
) -> None:
    db = tmp_path / "words.db"
    first = await start_server(db=db, **backend)
    async with first.client("alice") as alice:
        await post_lines(alice, "old", ["\x1b[31mFAILED\x1b[0m one", "plain two"])
        assert await found(alice, "failed") == [("old", 1)]
    await first.shutdown()
    # What an index written before escape sequences were dropped holds, and its version: none.
    if "storage.url" in backend:
        conn = await asyncpg.connect(backend["storage.url"], timeout=10)
        try:
            await conn.execute("COMMENT ON TABLE line_words IS NULL")
            await conn.execute(
                "UPDATE line_words SET words = ts_delete(words, 'failed') || '31mfailed'::tsvector WHERE seq = 1"
            )
            assert await conn.fetchval("SELECT count(*) FROM line_words WHERE words @@ 'failed'::tsquery") == 0
        finally:
            await conn.close()
    else:
        with sqlite3.connect(f"{db}-search") as conn:
            conn.execute("DELETE FROM meta WHERE key = 'words_version'")
            conn.execute("INSERT INTO line_words (line_words, rank) VALUES ('delete-all', 0)")
            conn.execute("UPDATE line_refs SET words = '31mfailed 0m one' WHERE seq = 1")
            conn.execute("INSERT INTO line_words (line_words) VALUES ('rebuild')")
            assert conn.execute("SELECT count(*) FROM line_words WHERE line_words MATCH 'failed'").fetchone()[0] == 0
    second = await start_server(db=db, **backend)
    async with second.client("alice") as alice:
        await eventually_found(alice, "failed", [("old", 1)])
        assert await found(alice, "31mfailed") == []


@pytest.mark.slow  # starts the server three times
async def test_the_index_of_a_database_made_without_one_is_built_in_the_background(
    start_server: ServerFactory, backend: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    old = await start_server(db=db, **{"search.index": False, **backend})
    async with old.client("alice") as alice:
        for agent_id in ("a", "b", "c"):
            await post_lines(alice, agent_id, [f"old {agent_id} {n} needle" for n in range(1, 3001)])
        assert (await alice.get("/api/search", params={"q": "needle"})).status_code == 503
    await old.shutdown()
    caplog.set_level(logging.INFO, logger="sentra.search")
    new = await start_server(db=db, **backend)
    async with new.client("alice") as alice:
        await post_lines(alice, "d", ["new needle"])
        deadline = time.monotonic() + 30
        total = 0
        while time.monotonic() < deadline:
            total = len((await search(alice, "needle", limit=1000, agent=["a", "b", "c"]))["lines"])
            if "search index: built" in caplog.text:
                break
            await asyncio.sleep(0.2)
        assert "search index: adding 9000 stored lines in the background" in caplog.text
        assert "search index: built" in caplog.text
        assert total == 1000
        newest = await found(alice, "needle", limit=4)
        assert newest[0] == ("d", 1)  # lines stored before the index come after those it took in as they came
        assert newest[1:] == [("c", 3000), ("c", 2999), ("c", 2998)]
        count = 0
        cursor = None
        for _ in range(20):
            page = await search(alice, "needle", limit=1000, **({"cursor": cursor} if cursor else {}))
            count += len(page["lines"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert count == 9001


TRICKY: list[Any] = [
    {"message": "plain ascii words", "ratio": 1e-05, "sum": 0.30000000000000004, "whole": 12.0},
    {"message": "big numbers", "huge": 2**70, "negative": -42, "nested": {"deep": [True, False, None]}},
    {"message": "Ünïcode straße KELVIN \u212a İstanbul 東京 emoji 🎉 done"},
    {"message": "nul\x00inside and tabs\tand\nnewlines", "text": "line one\nline two ǅ"},
    {"message": "underscored_words and dotted.words and \u00b7a1 tags-like"},
    {"message": "long " + "x" * 250 + " word", "key": "value " + "y" * 300},
    {"message": "ascii message", "unicode_field": "café crème"},
    "only a message",
    "\x1b[31mFAILED\x1b[0m tests/test_x.py::test_colour - assert 1 == 2",
    "\x1b]0;title\x07\x1b[1;32mPASSED\x1b[0m\x1b[K",
    {"message": "\x1b[33mwarn\x1b[0m", "out": "\x1b[31mboom\x1b[0m"},
]


async def test_the_index_finds_every_line_the_rule_matches(searched: RunningServer) -> None:
    async with searched.client("alice") as alice:
        await post_lines(alice, "tricky", TRICKY)
        stored = (await alice.get("/api/agents/tricky/logs")).json()["lines"]
        words = sorted(
            {
                word
                for line in stored
                for text in (line["message"], *field_texts(line["fields"]))
                for word in words_of(text)
            }
        )
        prefixes = [word[:3] + "*" for word in words if len(word) >= 3]
        queries = [*words, *prefixes, '"line two"', "1e", "1180591620717411303424", "-42"]
        for q in queries:
            expected = sorted(line["seq"] for line in stored if parse_query(q).matches(line["message"], line["fields"]))
            assert sorted(seq for _, seq in await found(alice, q)) == expected, q


@pytest.mark.slow  # PostgreSQL
async def test_another_process_takes_over_the_index_when_the_one_writing_it_stops(pg_url: str) -> None:
    first = PostgresStore(pg_url)
    await first.open()
    second = PostgresStore(pg_url)
    try:
        await first.append_lines("shared", "alice", [NewLine(time.time(), "INFO", "before the handover", "x", {})])
        query = SearchQuery(parse_query("handover"), owner="alice")
        assert [line.seq for _, line in await first.search_lines(query, before=None, limit=10)] == [1]
        await second.open()
        await first.close()  # the process that wrote the index goes away
        await second.append_lines("shared", "alice", [NewLine(time.time(), "INFO", "after the handover", "x", {})])
        assert [line.seq for _, line in await second.search_lines(query, before=None, limit=10)] == [2, 1]
    finally:
        await first.close()
        await second.close()
