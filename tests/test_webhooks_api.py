"""/api/webhooks: registering, listing, changing, removing and testing webhooks, who may, what every refusal says,
and that every answer (and every event sent) matches the OpenAPI document."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import standardwebhooks
from conftest import RunningServer, ServerFactory
from processes import free_port
from test_openapi import assert_valid, check_request_body, check_response
from webhook_receiver import Receiver

LOOPBACK = {"webhooks.allowed_targets": ["127.0.0.1"]}


@pytest.fixture
async def hooked(start_server: ServerFactory) -> RunningServer:
    """A server whose webhooks may reach receivers on 127.0.0.1."""
    return await start_server(**LOOPBACK)


async def test_every_webhook_operation_answers_as_documented(hooked: RunningServer) -> None:
    async with Receiver() as receiver, hooked.client("alice") as alice:
        body = {"url": receiver.url, "events": ["agent.failed", "lines.matched"], "label": "team=search",
                "format": "standard", "min_level": "error", "contains": "timeout"}  # fmt: skip
        check_request_body("post", "/api/webhooks", body)
        created = check_response(await alice.post("/api/webhooks", json=body))
        assert created["secret"].startswith("whsec_") and created["min_level"] == "ERROR"
        path = f"/api/webhooks/{created['id']}"
        listed = check_response(await alice.get("/api/webhooks"))
        assert [hook["id"] for hook in listed["webhooks"]] == [created["id"]]
        assert "secret" not in listed["webhooks"][0]
        assert "secret" not in check_response(await alice.get(path))
        patch = {"label": None, "format": "slack", "events": ["agent.completed"], "min_level": None, "contains": None}
        check_request_body("patch", path, patch)
        changed = check_response(await alice.patch(path, json=patch))
        assert (changed["label"], changed["format"], changed["events"]) == (None, "slack", ["agent.completed"])
        assert "secret" not in changed
        queued = check_response(await alice.post(path + "/test"))
        (request,) = await receiver.wait_for(1)
        assert request.headers["webhook-id"] == queued["id"]
        standardwebhooks.Webhook(created["secret"]).verify(request.body, request.headers)
        await asyncio.sleep(0.3)
        deliveries = check_response(await alice.get(path + "/deliveries"))["deliveries"]
        assert [(d["event"], d["result"], d["status"]) for d in deliveries] == [("webhook.test", "delivered", 204)]
        assert check_response(await alice.delete(path)) is None
        assert (await alice.get(path)).status_code == 404
        assert check_response(await alice.get("/api/webhooks")) == {"webhooks": []}


async def test_every_event_sent_matches_the_documented_event(hooked: RunningServer) -> None:
    async with Receiver() as receiver, hooked.client("alice") as alice:
        body = {"url": receiver.url, "events": ["agent.failed", "lines.matched"], "min_level": "WARNING"}
        assert (await alice.post("/api/webhooks", json=body)).status_code == 201
        await alice.post("/api/agents/run-1/logs", json=[{"message": "careful", "level": "warning"}])
        await alice.patch("/api/agents/run-1", json={"status": "failed"})
        for request in await receiver.wait_for(2):
            assert_valid(request.json(), "/components/schemas/WebhookEvent")
            agent = dict(request.json()["data"]["agent"])
            assert agent.pop("url") == f"{hooked.url}/?agent=run-1"
            assert_valid(agent, "/components/schemas/Agent")


async def test_the_secret_is_shown_once_and_differs_per_webhook(hooked: RunningServer) -> None:
    async with hooked.client("alice") as alice:
        body = {"url": "http://127.0.0.1:9/hook", "events": ["agent.failed"]}
        first = (await alice.post("/api/webhooks", json=body)).json()
        second = (await alice.post("/api/webhooks", json=body)).json()
        assert first["secret"] != second["secret"]
        listed = (await alice.get("/api/webhooks")).text
        assert first["secret"] not in listed and second["secret"] not in listed


async def test_owners_see_and_change_only_their_webhooks(hooked: RunningServer) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["agent.failed"]}
    async with (
        hooked.client("alice") as alice,
        hooked.client("bob") as bob,
        httpx.AsyncClient(base_url=hooked.url, headers=hooked.headers("root", scope="admin")) as admin,
    ):
        hook = (await alice.post("/api/webhooks", json=body)).json()
        path = f"/api/webhooks/{hook['id']}"
        assert (await bob.get("/api/webhooks")).json() == {"webhooks": []}
        for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")):
            response = await bob.request(method, path + suffix, json={"format": "slack"} if method == "PATCH" else None)
            assert response.status_code == 403, (method, suffix)
            assert response.json()["error"] == {
                "code": "not_owner",
                "message": f"webhook {hook['id']!r} belongs to another user",
            }
        missing = "/api/webhooks/wh_" + "0" * 24
        assert (await bob.get(missing)).json()["error"]["code"] == "webhook_not_found"
        assert (await bob.get("/api/webhooks/nope")).status_code == 400
        # An admin sees and may manage everyone's.
        assert [h["id"] for h in (await admin.get("/api/webhooks")).json()["webhooks"]] == [hook["id"]]
        assert (await admin.get(path)).status_code == 200


async def test_scopes_logs_read_manages_webhooks_write_only_tokens_and_tickets_cannot(hooked: RunningServer) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["agent.failed"]}
    reader = hooked.headers("carol", scope="logs:read")
    writer = hooked.headers("carol", scope="logs:write")
    async with httpx.AsyncClient(base_url=hooked.url) as http:
        assert (await http.post("/api/webhooks", json=body, headers=reader)).status_code == 201
        refused = await http.post("/api/webhooks", json=body, headers=writer)
        assert refused.status_code == 403 and "logs:read" in refused.json()["error"]["message"]
        assert (await http.get("/api/webhooks")).status_code == 401
        async with hooked.client("carol") as carol:
            await carol.post("/api/agents/run-1/logs", json={"message": "x"})
            ticket = (await carol.post("/api/stream-tickets", json={"agent": "run-1"})).json()["token"]
        refused = await http.get("/api/webhooks", headers={"Authorization": f"Bearer {ticket}"})
        assert refused.status_code == 403 and "stream ticket" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"events": ["agent.failed"]}, "a webhook needs 'url'"),
        ({"url": "http://127.0.0.1:9/"}, "a webhook needs 'events'"),
        ({"url": "ftp://127.0.0.1/", "events": ["agent.failed"]}, "is not an http:// or https:// URL"),
        ({"url": "http:///x", "events": ["agent.failed"]}, "names no host"),
        ({"url": 5, "events": ["agent.failed"]}, "'url' must be a string"),
        ({"url": "http://127.0.0.1:9/", "events": []}, "'events' must be a non-empty list"),
        ({"url": "http://127.0.0.1:9/", "events": ["agent.exploded"]}, "unknown event type 'agent.exploded'"),
        (
            {"url": "http://127.0.0.1:9/", "events": ["agent.failed"], "label": "team"},
            "'label' must look like key=value",
        ),
        ({"url": "http://127.0.0.1:9/", "events": ["agent.failed"], "format": "teams"}, "'format' must be one of"),
        ({"url": "http://127.0.0.1:9/", "events": ["lines.matched"], "min_level": "LOUD"}, "unknown level 'LOUD'"),
        ({"url": "http://127.0.0.1:9/", "events": ["lines.matched"]}, "lines.matched needs 'min_level' and/or"),
        ({"url": "http://127.0.0.1:9/", "events": ["agent.failed"], "contains": "x"}, "add it to 'events'"),
        ({"url": "http://127.0.0.1:9/", "events": ["agent.failed"], "secret": "x"}, "unknown field 'secret'"),
        ({"url": "http://127.0.0.1:9/", "events": None}, "'events' must not be null"),
        ({"url": "http://no-such-host.invalid/", "events": ["agent.failed"]}, "does not resolve"),
    ],
)
async def test_every_refused_registration_says_what_was_wrong(hooked: RunningServer, body: Any, says: str) -> None:
    async with hooked.client("alice") as alice:
        response = await alice.post("/api/webhooks", json=body)
        assert response.status_code == 400
        assert says in response.json()["error"]["message"]


async def test_a_patch_to_an_internal_url_is_refused_naming_the_setting(start_server: ServerFactory) -> None:
    server = await start_server(**{"webhooks.allowed_targets": ["127.0.0.1/32"]})
    async with server.client("alice") as alice:
        hook = (
            await alice.post("/api/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["agent.failed"]})
        ).json()
        response = await alice.patch(f"/api/webhooks/{hook['id']}", json={"url": "http://10.0.0.1/"})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "target_not_allowed"
        assert "10.0.0.1, a private address" in response.json()["error"]["message"]
        assert "webhooks.allowed_targets" in response.json()["error"]["message"]
        assert (await alice.patch(f"/api/webhooks/{hook['id']}", json={})).status_code == 400


@pytest.mark.slow  # waits for two failed attempts
async def test_a_webhook_failing_for_longer_than_failing_after_shows_as_failing(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK, **{"webhooks.failing_after": "1s"})
    async with server.client("alice") as alice:
        nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every attempt is refused
        hook = (await alice.post("/api/webhooks", json={"url": nobody, "events": ["agent.failed"]})).json()
        assert hook["status"] == "ok" and hook["failing_since"] is None
        await alice.post(f"/api/webhooks/{hook['id']}/test")
        deadline = time.monotonic() + 8
        shown = hook
        while shown["status"] != "failing" and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            shown = (await alice.get(f"/api/webhooks/{hook['id']}")).json()
        assert shown["status"] == "failing" and shown["failing_since"] is not None
        deliveries = (await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
        assert deliveries[0]["result"] == "failed" and deliveries[0]["error"] == "connection refused"
