"""History over HTTP: after/before/limit paging, level and q filters, json/ndjson/text formats."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest import RunningServer


async def ingest(client: httpx.AsyncClient, agent: str, lines: list[Any]) -> None:
    """Post lines in requests of at most 10,000 (the default per-request limit)."""
    for start in range(0, len(lines), 10000):
        response = await client.post(f"/api/agents/{agent}/logs", json=lines[start : start + 10000])
        assert response.status_code == 200, response.text


async def page(client: httpx.AsyncClient, agent: str, **params: Any) -> dict[str, Any]:
    """One JSON history page."""
    response = await client.get(f"/api/agents/{agent}/logs", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def seqs(answer: dict[str, Any]) -> list[int]:
    """The seqs of a history page."""
    return [line["seq"] for line in answer["lines"]]


@pytest.fixture
async def numbered(alice: httpx.AsyncClient) -> httpx.AsyncClient:
    """Agent `n` with 25 lines: message "line {seq}"."""
    await ingest(alice, "n", [f"line {seq}" for seq in range(1, 26)])
    return alice


async def test_history_without_cursor_is_first_page_ascending(numbered: httpx.AsyncClient) -> None:
    answer = await page(numbered, "n")
    assert seqs(answer) == list(range(1, 26))
    assert [line["message"] for line in answer["lines"]][:2] == ["line 1", "line 2"]
    assert answer["next_after"] is None
    assert set(answer["lines"][0]) == {"agent", "seq", "ts", "level", "message", "source", "fields"}


async def test_after_and_limit_page_through_without_gaps(numbered: httpx.AsyncClient) -> None:
    first = await page(numbered, "n", limit=10)
    assert seqs(first) == list(range(1, 11))
    assert first["next_after"] == 10
    second = await page(numbered, "n", limit=10, after=first["next_after"])
    assert seqs(second) == list(range(11, 21))
    assert second["next_after"] == 20
    third = await page(numbered, "n", limit=10, after=second["next_after"])
    assert seqs(third) == list(range(21, 26))
    assert third["next_after"] is None


async def test_page_that_ends_exactly_at_last_line_has_no_next(numbered: httpx.AsyncClient) -> None:
    answer = await page(numbered, "n", after=20, limit=5)
    assert seqs(answer) == [21, 22, 23, 24, 25]
    assert answer["next_after"] is None


async def test_after_last_seq_is_empty(numbered: httpx.AsyncClient) -> None:
    answer = await page(numbered, "n", after=25)
    assert answer["lines"] == [] and answer["next_after"] is None


async def test_before_gives_the_lines_just_before_ascending(numbered: httpx.AsyncClient) -> None:
    answer = await page(numbered, "n", before=21, limit=5)
    assert seqs(answer) == [16, 17, 18, 19, 20]
    assert answer["next_after"] == 20
    assert answer["next_before"] == 16
    earliest = await page(numbered, "n", before=4, limit=5)
    assert seqs(earliest) == [1, 2, 3]
    assert earliest["next_before"] is None


async def test_after_and_before_together_is_400(numbered: httpx.AsyncClient) -> None:
    response = await numbered.get("/api/agents/n/logs", params={"after": 1, "before": 5})
    assert response.status_code == 400
    assert "either 'after' or 'before'" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": "ten"}, "'limit' must be an integer"),
        ({"limit": 0}, "'limit' must be at least 1"),
        ({"after": -1}, "'after' must be at least 0"),
        ({"before": "x"}, "'before' must be an integer"),
        ({"after": "9" * 30}, "'after' must be at most"),
        ({"before": str(2**63)}, "'before' must be at most"),
        ({"limit": "9" * 30}, "'limit' must be at most"),
        ({"format": "xml"}, "'format' must be json, ndjson or text"),
        ({"level": "LOUD"}, "'level'"),
    ],
)
async def test_bad_query_parameters_are_400_naming_them(
    numbered: httpx.AsyncClient, params: dict[str, Any], words: str
) -> None:
    response = await numbered.get("/api/agents/n/logs", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert words in error["message"]


async def test_default_limit_is_1000_and_limit_is_clamped_to_10000(alice: httpx.AsyncClient) -> None:
    await ingest(alice, "big", [f"m{seq}" for seq in range(1, 10_502)])
    default = await page(alice, "big")
    assert seqs(default) == list(range(1, 1001))
    assert default["next_after"] == 1000
    clamped = await page(alice, "big", limit=50_000)
    assert len(clamped["lines"]) == 10_000
    assert clamped["next_after"] == 10_000
    rest = await page(alice, "big", limit=50_000, after=clamped["next_after"])
    assert seqs(rest) == list(range(10_001, 10_502)) and rest["next_after"] is None
    # Without a limit, text and ndjson download the whole log, past the JSON maximum.
    text = await alice.get("/api/agents/big/logs", params={"format": "text"})
    assert text.text.splitlines() == [f"m{seq}" for seq in range(1, 10_502)]
    ndjson = await alice.get("/api/agents/big/logs", params={"format": "ndjson"})
    assert [json.loads(row)["seq"] for row in ndjson.text.splitlines()] == list(range(1, 10_502))


async def test_level_is_a_minimum(alice: httpx.AsyncClient) -> None:
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "INFO", "ERROR"]
    await ingest(alice, "lv", [{"message": level.lower(), "level": level} for level in levels])
    warning = await page(alice, "lv", level="warning")
    assert [(line["seq"], line["level"]) for line in warning["lines"]] == [
        (3, "WARNING"),
        (4, "ERROR"),
        (5, "CRITICAL"),
        (7, "ERROR"),
    ]
    assert seqs(await page(alice, "lv", level="40")) == [4, 5, 7]
    assert seqs(await page(alice, "lv", level="DEBUG")) == list(range(1, 8))


async def test_q_finds_words_whatever_their_case(alice: httpx.AsyncClient) -> None:
    messages = ["Connection REFUSED", "all good", "refused again", "ReFuSeD", "日本語 ログ", "nothing"]
    await ingest(alice, "q", messages)
    assert seqs(await page(alice, "q", q="refused")) == [1, 3, 4]
    assert seqs(await page(alice, "q", q="REFUSED")) == [1, 3, 4]
    assert seqs(await page(alice, "q", q="ログ")) == [5]
    assert seqs(await page(alice, "q", q="50%_off")) == []


async def test_q_treats_sql_wildcards_literally(alice: httpx.AsyncClient) -> None:
    await ingest(alice, "w", ["50% off", "500 off", "a_b", "axb"])
    assert seqs(await page(alice, "w", q="50%")) == [1]
    assert seqs(await page(alice, "w", q="a_b")) == [3]


async def test_filters_combine_and_next_after_walks_filtered_pages(alice: httpx.AsyncClient) -> None:
    lines = [
        {"message": f"{'error' if seq % 3 == 0 else 'info'} {seq}", "level": "ERROR" if seq % 3 == 0 else "INFO"}
        for seq in range(1, 31)
    ]
    await ingest(alice, "f", lines)
    collected: list[int] = []
    after = 0
    for _ in range(20):
        answer = await page(alice, "f", level="ERROR", q="error", limit=4, after=after)
        collected += seqs(answer)
        if answer["next_after"] is None:
            break
        after = answer["next_after"]
    assert collected == list(range(3, 31, 3))


async def test_format_text_is_plain_download(numbered: httpx.AsyncClient) -> None:
    response = await numbered.get("/api/agents/n/logs", params={"format": "text", "after": 22})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'filename="n.log"' in response.headers["content-disposition"]
    assert response.text == "line 23\nline 24\nline 25\n"


async def test_format_text_with_limit_and_before(numbered: httpx.AsyncClient) -> None:
    limited = await numbered.get("/api/agents/n/logs", params={"format": "text", "limit": 2})
    assert limited.text == "line 1\nline 2\n"
    before = await numbered.get("/api/agents/n/logs", params={"format": "text", "before": 3})
    assert before.text == "line 1\nline 2\n"


async def test_format_ndjson_one_line_object_per_row(numbered: httpx.AsyncClient) -> None:
    response = await numbered.get("/api/agents/n/logs", params={"format": "ndjson", "q": "line 2"})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert 'filename="n.ndjson"' in response.headers["content-disposition"]
    rows = [json.loads(row) for row in response.text.splitlines()]
    assert [row["seq"] for row in rows] == [2]
    assert rows[0]["message"] == "line 2" and rows[0]["agent"] == "n"


async def test_history_of_unknown_agent_is_404(alice: httpx.AsyncClient) -> None:
    response = await alice.get("/api/agents/nobody/logs")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "agent_not_found" and "nobody" in error["message"]


async def test_history_of_agent_created_without_lines_is_empty(alice: httpx.AsyncClient) -> None:
    assert (await alice.post("/api/agents", json={"id": "empty"})).status_code == 201
    answer = await page(alice, "empty")
    assert answer == {"lines": [], "next_after": None, "next_before": None}
    text = await alice.get("/api/agents/empty/logs", params={"format": "text"})
    assert text.status_code == 200 and text.text == ""


async def test_history_is_consistent_with_lines_arriving(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        await ingest(alice, "live", [f"a{seq}" for seq in range(1, 6)])
        first = await page(alice, "live", limit=5)
        assert seqs(first) == [1, 2, 3, 4, 5] and first["next_after"] is None
        await ingest(alice, "live", ["a6", "a7"])
        more = await page(alice, "live", after=5)
        assert seqs(more) == [6, 7]
