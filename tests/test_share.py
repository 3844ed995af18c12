"""Share links: POST /api/agents/{id}/share makes a token that reads that one agent (record, history, streams,
lists) and nothing else; its ttl is bounded by auth.max_share_ttl; GET .../shares lists the links, and DELETE
.../share/{id} revokes one: refused at once, and its open streams end."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import (
    RunningServer,
    ServerFactory,
    create_agent,
    error_of,
    open_stream,
    post_lines,
    read_lines,
    stream_path,
)
from test_openapi import check_request_body, check_response


async def share(client: httpx.AsyncClient, agent_id: str, ttl: str = "24h") -> dict[str, Any]:
    """Make a share link of `agent_id`; the 201 answer."""
    response = await client.post(f"/api/agents/{agent_id}/share", json={"ttl": ttl})
    assert response.status_code == 201, response.text
    return dict(response.json())


def with_token(server: RunningServer, token: str) -> httpx.AsyncClient:
    """A client that sends `token` (a share link's) and nothing else."""
    return httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)


async def test_a_share_link_is_201_with_a_url_that_opens_the_viewer_on_the_agent(alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "demo", ["hello"])
    before = time.time()
    link = await share(alice, "demo", "24h")
    assert set(link) == {"id", "url", "token", "expires_at"}
    assert before + 86400 - 2 <= link["expires_at"] <= time.time() + 86400 + 2
    url = urlsplit(link["url"])
    assert url.path == "/" and parse_qs(url.query) == {"agent": ["demo"]}
    # The token rides in the fragment, which browsers never send to a server.
    assert url.fragment == f"share={link['token']}" and link["token"] not in url.query


async def test_the_token_reads_that_one_agent_record_history_and_stream(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await post_lines(alice, "shown", ["one", "two"])
    await post_lines(alice, "hidden", ["secret"])
    link = await share(alice, "shown")
    async with with_token(server, link["token"]) as guest:
        record = await guest.get("/api/agents/shown")
        assert (record.status_code, record.json()["id"]) == (200, "shown")
        history = await guest.get("/api/agents/shown/logs")
        assert [line["message"] for line in history.json()["lines"]] == ["one", "two"]
        listed = await guest.get("/api/agents")
        assert [agent["id"] for agent in listed.json()["agents"]] == ["shown"]
        found = await guest.get("/api/search", params={"q": "secret"})
        assert found.status_code == 200 and found.json()["lines"] == []
        async with open_stream(guest, stream_path("shown")) as stream:
            assert stream.response.status_code == 200
            await read_lines(stream, 2)
            await post_lines(alice, "shown", ["three"])
            events = await read_lines(stream, 1)
            assert events[-1].json()["lines"][-1]["message"] == "three"


async def test_the_token_gets_403_on_every_other_agent_and_every_write(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await post_lines(alice, "shown", ["one"])
    await post_lines(alice, "other", ["secret"])
    link = await share(alice, "shown")
    async with with_token(server, link["token"]) as guest:
        for path in ("/api/agents/other", "/api/agents/other/logs", stream_path("other")):
            response = await guest.get(path)
            assert response.status_code == 403, path
            assert error_of(response)["code"] == "not_owner"
        writes = [
            guest.post("/api/agents/shown/logs", json={"message": "x"}),
            guest.post("/api/agents", json={"id": "new-one"}),
            guest.patch("/api/agents/shown", json={"status": "failed"}),
            guest.delete("/api/agents/shown"),
            guest.post("/api/agents/shown/stop"),
            guest.post("/api/agents/shown/share", json={"ttl": "1h"}),
            guest.get("/api/agents/shown/shares"),
            guest.delete(f"/api/agents/shown/share/{link['id']}"),
            guest.post("/api/webhooks", json={"url": "https://example.com/h", "events": ["agent.failed"]}),
            guest.post("/api/stream-tickets", json={"agent": "shown"}),
        ]
        for answer in await asyncio.gather(*writes):
            assert answer.status_code == 403, (answer.request.method, answer.request.url, answer.text)
    assert (await alice.get("/api/agents/shown")).json()["status"] == "running"


async def test_only_the_owner_makes_links_and_the_ttl_is_bounded(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await create_agent(alice, id="bounded")
    async with server.client("bob") as bob:
        refused = await bob.post("/api/agents/bounded/share", json={"ttl": "1h"})
    assert (refused.status_code, error_of(refused)["code"]) == (403, "not_owner")
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("root", scope="admin")) as admin:
        assert (await admin.post("/api/agents/bounded/share", json={"ttl": "1h"})).status_code == 403
    for ttl in ("31d", "bogus", "0s", 3600, None, "-1h"):
        response = await alice.post("/api/agents/bounded/share", json={"ttl": ttl})
        assert response.status_code == 400, ttl
        assert error_of(response)["code"] in ("invalid_ttl", "bad_request"), ttl
    too_long = await alice.post("/api/agents/bounded/share", json={"ttl": "31d"})
    assert "at most 30 days" in error_of(too_long)["message"]
    assert (await alice.post("/api/agents/bounded/share", json={"ttl": "30d"})).status_code == 201
    default = await alice.post("/api/agents/bounded/share")
    assert default.status_code == 201 and abs(default.json()["expires_at"] - time.time() - 86400) < 5
    unknown = await alice.post("/api/agents/bounded/share", json={"ttl": "1h", "agent": "x"})
    assert unknown.status_code == 400
    assert (await alice.post("/api/agents/nobody/share", json={"ttl": "1h"})).status_code == 404


async def test_auth_max_share_ttl_sets_the_bound(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.max_share_ttl": "2h"})
    async with server.client("alice") as alice:
        await create_agent(alice, id="short")
        assert (await alice.post("/api/agents/short/share", json={"ttl": "2h"})).status_code == 201
        refused = await alice.post("/api/agents/short/share", json={"ttl": "3h"})
        assert refused.status_code == 400 and "auth.max_share_ttl" in error_of(refused)["message"]


async def test_the_owner_lists_links_without_their_tokens(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="listed")
    first = await share(alice, "listed", "1h")
    second = await share(alice, "listed", "2h")
    shares = (await alice.get("/api/agents/listed/shares")).json()["shares"]
    assert [item["id"] for item in shares] == [first["id"], second["id"]]
    assert shares[0]["created_by"] == "alice" and shares[0]["agent"] == "listed"
    assert all("token" not in item for item in shares)
    async with server.client("bob") as bob:
        assert (await bob.get("/api/agents/listed/shares")).status_code == 403


async def test_revoking_a_link_refuses_its_token_and_ends_its_open_stream(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await post_lines(alice, "revoked", ["before"])
    link = await share(alice, "revoked")
    kept = await share(alice, "revoked")
    async with with_token(server, link["token"]) as guest:
        async with open_stream(guest, stream_path("revoked")) as stream:
            await read_lines(stream, 1)
            revoked_at = time.monotonic()
            response = await alice.delete(f"/api/agents/revoked/share/{link['id']}")
            assert response.status_code == 204
            remaining = await stream.collect_until_closed(timeout=5)
            assert time.monotonic() - revoked_at < 1.0
            assert all(not event.json().get("lines") for event in remaining)
        refused = await guest.get("/api/agents/revoked")
        assert (refused.status_code, error_of(refused)["code"]) == (401, "token_revoked")
    async with with_token(server, kept["token"]) as other:
        assert (await other.get("/api/agents/revoked")).status_code == 200
    listed = (await alice.get("/api/agents/revoked/shares")).json()["shares"]
    assert [item["id"] for item in listed] == [kept["id"]]
    again = await alice.delete(f"/api/agents/revoked/share/{link['id']}")
    assert (again.status_code, error_of(again)["code"]) == (404, "share_not_found")


async def test_another_user_cannot_revoke_a_link(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="guarded")
    link = await share(alice, "guarded")
    async with server.client("bob") as other:
        assert (await other.delete(f"/api/agents/guarded/share/{link['id']}")).status_code == 403
    async with with_token(server, link["token"]) as guest:
        assert (await guest.get("/api/agents/guarded")).status_code == 200


async def test_a_share_token_signs_the_viewer_in_read_only(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await create_agent(alice, id="viewed")
    link = await share(alice, "viewed")
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as browser:
        signed_in = await browser.post("/api/session", json={"token": link["token"]})
        assert signed_in.status_code == 200
        assert signed_in.json()["subject"] == f"share:{link['id']}"
        assert signed_in.json()["scopes"] == ["logs:read"]
        assert (await browser.get("/api/agents/viewed")).status_code == 200
        assert [agent["id"] for agent in (await browser.get("/api/agents")).json()["agents"]] == ["viewed"]


async def test_share_answers_match_the_documented_schemas(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await post_lines(alice, "documented", ["one"])
    check_request_body("post", "/api/agents/documented/share", {"ttl": "1h"})
    made = check_response(await alice.post("/api/agents/documented/share", json={"ttl": "1h"}))
    listed = check_response(await alice.get("/api/agents/documented/shares"))
    assert [item["id"] for item in listed["shares"]] == [made["id"]]
    stopped = check_response(await alice.post("/api/agents/documented/stop"))
    assert stopped["stop_requested"] is True
    check_response(await alice.post("/api/agents/documented/logs", json=["two"]))
    assert check_response(await alice.delete(f"/api/agents/documented/share/{made['id']}")) is None
    check_response(await alice.delete(f"/api/agents/documented/share/{made['id']}"))  # a 404, as documented


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


async def test_the_token_reads_the_agents_attachments_and_no_other(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    shown = await alice.post(
        "/api/agents/pictured/attachments",
        params={"name": "step.png"},
        content=PNG,
        headers={"Content-Type": "image/png"},
    )
    hidden = await alice.post(
        "/api/agents/unshared/attachments", params={"name": "x.png"}, content=PNG, headers={"Content-Type": "image/png"}
    )
    assert shown.status_code == hidden.status_code == 201, shown.text
    link = await share(alice, "pictured")
    async with with_token(server, link["token"]) as guest:
        image = await guest.get(shown.json()["url"])
        assert (image.status_code, image.content, image.headers["content-type"]) == (200, PNG, "image/png")
        other = await guest.get(hidden.json()["url"])
        assert (other.status_code, error_of(other)["code"]) == (403, "not_owner")
        upload = await guest.post(
            "/api/agents/pictured/attachments",
            params={"name": "y.png"},
            content=PNG,
            headers={"Content-Type": "image/png"},
        )
        assert upload.status_code == 403
        await alice.delete(f"/api/agents/pictured/share/{link['id']}")
        assert (await guest.get(shown.json()["url"])).status_code == 401


@pytest.mark.slow  # waits for the revocation watch (once a second)
async def test_deleting_the_agent_revokes_its_links_so_a_new_agent_of_that_id_is_not_theirs(
    server: RunningServer, alice: httpx.AsyncClient
) -> None:
    await post_lines(alice, "reused", ["first run"])
    link = await share(alice, "reused")
    assert (await alice.delete("/api/agents/reused")).status_code == 204
    await post_lines(alice, "reused", ["second run, not shared"])
    async with with_token(server, link["token"]) as guest:
        deadline = time.monotonic() + 2
        while (answer := await guest.get("/api/agents/reused/logs")).status_code != 401:
            assert time.monotonic() < deadline, answer.text
            await asyncio.sleep(0.1)
        assert error_of(answer)["code"] == "token_revoked"
    assert (await alice.get("/api/agents/reused/shares")).json()["shares"] == []
