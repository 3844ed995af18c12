"""/api/agents over HTTP: create, list (own agents, filters, pages), read, update and delete."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from conftest import RunningServer, create_agent, error_of


async def list_ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """The ids of GET /api/agents (one page)."""
    response = await client.get("/api/agents", params=params)
    assert response.status_code == 200, response.text
    return [agent["id"] for agent in response.json()["agents"]]


# ---- create --------------------------------------------------------------------------------------


async def test_create_agent_is_201_with_location(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents", json={"id": "run-1", "name": "Crawler", "labels": {"team": "web"}})
    assert response.status_code == 201
    assert response.headers["location"] == "/api/agents/run-1"
    agent = response.json()
    assert {k: agent[k] for k in ("id", "name", "owner", "status", "labels", "line_count", "last_seq")} == {
        "id": "run-1",
        "name": "Crawler",
        "owner": "alice",
        "status": "running",
        "labels": {"team": "web"},
        "line_count": 0,
        "last_seq": 0,
    }
    assert agent["created_at"] == agent["updated_at"]
    fetched = await alice.get(response.headers["location"])
    assert fetched.json() == agent


async def test_create_existing_id_is_409(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    await create_agent(alice, id="run-1")
    again = await alice.post("/api/agents", json={"id": "run-1"})
    assert again.status_code == 409
    error = error_of(again)
    assert error["code"] == "agent_exists" and "run-1" in error["message"]
    # Someone else's id is taken too, and creating it does not steal it.
    theirs = await bob.post("/api/agents", json={"id": "run-1"})
    assert theirs.status_code == 409
    assert (await alice.get("/api/agents/run-1")).json()["owner"] == "alice"


async def test_create_without_id_generates_one(alice: httpx.AsyncClient) -> None:
    first = await create_agent(alice)
    second = await create_agent(alice, name="named")
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", first["id"])
    assert first["id"] != second["id"]
    assert (await alice.get(f"/api/agents/{first['id']}")).status_code == 200
    posted = await alice.post(f"/api/agents/{first['id']}/logs", json="works")
    assert posted.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}


async def test_create_with_empty_body_generates_agent(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/agents", content=b"")
    assert response.status_code == 201
    assert response.json()["owner"] == "alice"


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"labels": {"team": 5}}, "invalid_labels", "object of strings to strings"),
        ({"labels": ["team"]}, "invalid_labels", "object of strings to strings"),
        ({"labels": {"": "x"}}, "invalid_labels", "1-128 characters"),
        ({"labels": {"k" * 129: "x"}}, "invalid_labels", "1-128 characters"),
        ({"labels": {"k": "v" * 1025}}, "invalid_labels", "at most 1024"),
        ({"id": 7}, "invalid_agent_id", "'id' must be a string"),
        ({"id": "no spaces"}, "invalid_agent_id", "1-128 characters"),
        ({"id": "x" * 129}, "invalid_agent_id", "1-128 characters"),
        ({"name": 3}, "bad_request", "'name' must be a string"),
        ({"owner": "bob"}, "bad_request", "unknown field 'owner'"),
    ],
)
async def test_create_with_bad_fields_is_400(
    alice: httpx.AsyncClient, body: dict[str, Any], code: str, words: str
) -> None:
    response = await alice.post("/api/agents", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code
    assert words in error["message"]
    assert await list_ids(alice) == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'"text"',
        b"[" * 100_000,
        b'{"name": "\\ud800"}',
        b'{"labels": {"k": "\\udfff"}}',
        b'{"name": "\xff"}',
    ],
    ids=["broken", "array", "string", "deep", "surrogate-name", "surrogate-label", "bad-utf8"],
)
async def test_create_with_body_that_is_not_an_object_is_400(alice: httpx.AsyncClient, body: bytes) -> None:
    response = await alice.post("/api/agents", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    assert await list_ids(alice) == []
    assert (await alice.post("/api/agents", json={"id": "after"})).status_code == 201


# ---- list ----------------------------------------------------------------------------------------


async def test_list_shows_only_callers_agents_newest_first(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        await create_agent(alice, id="a1")
        await create_agent(bob, id="b1")
        await alice.post("/api/agents/a2/logs", json="created by ingest")
        assert await list_ids(alice) == ["a2", "a1"]
        assert await list_ids(bob) == ["b1"]
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("root", scope="admin")) as admin:
        assert await list_ids(admin) == ["a2", "b1", "a1"]


async def test_list_filters_by_status_and_label(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="web-1", labels={"team": "web", "batch": "42"})
    await create_agent(alice, id="web-2", labels={"team": "web", "batch": "43"})
    await create_agent(alice, id="ml-1", labels={"team": "ml", "batch": "42"})
    await alice.patch("/api/agents/web-1", json={"status": "completed"})
    await alice.patch("/api/agents/ml-1", json={"status": "failed"})
    assert await list_ids(alice, status="running") == ["web-2"]
    assert await list_ids(alice, status="completed") == ["web-1"]
    assert await list_ids(alice, status="failed") == ["ml-1"]
    assert await list_ids(alice, label="team=web") == ["web-2", "web-1"]
    assert await list_ids(alice, label=["team=web", "batch=42"]) == ["web-1"]
    assert await list_ids(alice, label="batch=42", status="failed") == ["ml-1"]
    assert await list_ids(alice, label="team=nobody") == []


async def test_label_filter_with_dots_spaces_and_equals(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="odd", labels={"a.b": "c", "Team Name": "x=y"})
    assert await list_ids(alice, label="a.b=c") == ["odd"]
    assert await list_ids(alice, label="Team Name=x=y") == ["odd"]
    assert await list_ids(alice, label="a=c") == []


async def test_label_filter_with_double_quote_in_key(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="quoted", labels={'k"ey': "v"})
    assert await list_ids(alice, label='k"ey=v') == ["quoted"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"status": "sleeping"}, "'status' must be one of running, completed, failed"),
        ({"label": "team"}, "'label' must look like key=value"),
        ({"limit": "many"}, "'limit' must be an integer"),
        ({"cursor": "x"}, "'cursor' must be an integer"),
        ({"cursor": str(2**63)}, "'cursor' must be at most"),
    ],
)
async def test_list_with_bad_query_is_400(alice: httpx.AsyncClient, params: dict[str, str], words: str) -> None:
    response = await alice.get("/api/agents", params=params)
    assert response.status_code == 400
    assert words in error_of(response)["message"]


async def test_list_pages_with_next_cursor(alice: httpx.AsyncClient) -> None:
    for number in range(7):
        await create_agent(alice, id=f"r{number}")
    seen: list[str] = []
    cursor: int | None = None
    pages = 0
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        answer = (await alice.get("/api/agents", params=params)).json()
        pages += 1
        seen += [agent["id"] for agent in answer["agents"]]
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"r{number}" for number in reversed(range(7))]


async def test_list_page_that_holds_everything_has_no_cursor(alice: httpx.AsyncClient) -> None:
    for number in range(3):
        await create_agent(alice, id=f"r{number}")
    answer = (await alice.get("/api/agents", params={"limit": 3})).json()
    assert len(answer["agents"]) == 3 and answer["next_cursor"] is None


# ---- read, update, delete ------------------------------------------------------------------------


async def test_get_agent_counts_lines(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json=["x", "y", "z"])
    agent = (await alice.get("/api/agents/a1")).json()
    assert (agent["line_count"], agent["first_seq"], agent["last_seq"], agent["status"]) == (3, 1, 3, "running")
    assert agent["last_line_at"] is not None


async def test_get_unknown_agent_is_404(alice: httpx.AsyncClient) -> None:
    response = await alice.get("/api/agents/ghost")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "agent_not_found" and "ghost" in error["message"]


async def test_patch_name_and_labels(alice: httpx.AsyncClient) -> None:
    created = await create_agent(alice, id="a1", name="old", labels={"a": "1"})
    response = await alice.patch("/api/agents/a1", json={"name": "new", "labels": {"b": "2"}})
    assert response.status_code == 200
    agent = response.json()
    assert (agent["name"], agent["labels"], agent["status"]) == ("new", {"b": "2"}, "running")
    assert agent["updated_at"] >= created["updated_at"]
    assert (await alice.get("/api/agents/a1")).json()["labels"] == {"b": "2"}
    assert await list_ids(alice, label="b=2") == ["a1"]
    assert await list_ids(alice, label="a=1") == []


async def test_patch_status_with_reason(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="a1")
    response = await alice.patch("/api/agents/a1", json={"status": "failed", "reason": "out of memory"})
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["reason"]) == ("failed", "out of memory")
    assert (await alice.get("/api/agents/a1")).json()["status"] == "failed"


async def test_patch_finished_agent_name_is_allowed(alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="a1")
    await alice.patch("/api/agents/a1", json={"status": "completed"})
    response = await alice.patch("/api/agents/a1", json={"name": "renamed later"})
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["status"]) == ("renamed later", "completed")


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"status": "paused"}, "invalid_status", "'status' must be one of running, completed, failed"),
        ({"labels": {"a": 1}}, "invalid_labels", "object of strings to strings"),
        ({"name": "n" * 513}, "bad_request", "at most 512"),
        ({"owner": "bob"}, "bad_request", "unknown field 'owner'"),
    ],
)
async def test_patch_with_bad_fields_is_400(
    alice: httpx.AsyncClient, body: dict[str, Any], code: str, words: str
) -> None:
    await create_agent(alice, id="a1", name="kept")
    response = await alice.patch("/api/agents/a1", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code and words in error["message"]
    assert (await alice.get("/api/agents/a1")).json()["name"] == "kept"


async def test_patch_unknown_agent_is_404(alice: httpx.AsyncClient) -> None:
    response = await alice.patch("/api/agents/ghost", json={"status": "completed"})
    assert response.status_code == 404


async def test_delete_removes_agent_and_lines(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/a1/logs", json=["one", "two"])
    response = await alice.delete("/api/agents/a1")
    assert response.status_code == 204
    assert response.content == b""
    assert (await alice.get("/api/agents/a1")).status_code == 404
    assert (await alice.get("/api/agents/a1/logs")).status_code == 404
    assert await list_ids(alice) == []
    again = await alice.delete("/api/agents/a1")
    assert again.status_code == 404
    # The id is free again and starts a fresh sequence.
    reborn = await alice.post("/api/agents/a1/logs", json="new life")
    assert reborn.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
    lines = (await alice.get("/api/agents/a1/logs")).json()["lines"]
    assert [line["message"] for line in lines] == ["new life"]


async def test_delete_clears_idempotency_keys(alice: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "once"}
    await alice.post("/api/agents/a1/logs", json=["a", "b"], headers=headers)
    await alice.delete("/api/agents/a1")
    response = await alice.post("/api/agents/a1/logs", json=["c"], headers=headers)
    assert response.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
