"""Webhooks delivered by a real server to a real receiver on loopback (allowed through webhooks.allowed_targets),
verified with the official Standard Webhooks library."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import standardwebhooks
from conftest import ServerFactory
from processes import free_port
from webhook_receiver import Receiver

LOOPBACK = {"webhooks.allowed_targets": ["127.0.0.1"]}


async def register(client: httpx.AsyncClient, url: str, events: list[str], **fields: Any) -> dict[str, Any]:
    """Register a webhook; its answer (with the secret)."""
    response = await client.post("/api/webhooks", json={"url": url, "events": events, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def post_lines(client: httpx.AsyncClient, agent_id: str, lines: list[dict[str, Any]]) -> None:
    """Ingest lines into an agent."""
    response = await client.post(f"/api/agents/{agent_id}/logs", json=lines)
    assert response.status_code == 200, response.text


@pytest.mark.slow  # waits seconds for deliveries, retries or a timeout
async def test_a_failed_run_delivers_agent_failed_that_standard_webhooks_verifies(
    start_server: ServerFactory,
) -> None:
    server = await start_server(**LOOPBACK, **{"server.public_url": "https://sentra.example.com/"})
    async with Receiver() as receiver, server.client("alice") as alice:
        hook = await register(alice, receiver.url, ["agent.failed"])
        assert hook["secret"].startswith("whsec_")
        await post_lines(alice, "run-1", [{"message": f"step {n}"} for n in range(30)])
        response = await alice.patch("/api/agents/run-1", json={"status": "failed", "reason": "crashed"})
        assert response.status_code == 200
        (request,) = await receiver.wait_for(1)
        event = standardwebhooks.Webhook(hook["secret"]).verify(request.body, request.headers)
        assert event["type"] == "agent.failed"
        agent = event["data"]["agent"]
        assert (agent["id"], agent["status"], agent["reason"], agent["line_count"]) == (
            "run-1",
            "failed",
            "crashed",
            30,
        )
        assert agent["url"] == "https://sentra.example.com/?agent=run-1"
        assert [line["message"] for line in event["data"]["lines"]] == [f"step {n}" for n in range(10, 30)]
        assert request.headers["webhook-id"].startswith("msg_")
        # A completed run is not what this webhook asked for.
        await post_lines(alice, "run-2", [{"message": "ok"}])
        assert (await alice.patch("/api/agents/run-2", json={"status": "completed"})).status_code == 200
        await asyncio.sleep(1.2)
        assert len(receiver.received) == 1
        deliveries = (await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
        assert [(d["event"], d["attempt"], d["result"], d["status"]) for d in deliveries] == [
            ("agent.failed", 1, "delivered", 204)
        ]


@pytest.mark.slow  # waits for two retries, about 7 s
async def test_500_twice_then_204_gives_three_attempts_with_one_webhook_id(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK)
    async with Receiver([500, 500]) as receiver, server.client("alice") as alice:
        hook = await register(alice, receiver.url, ["agent.completed"])
        await post_lines(alice, "run-1", [{"message": "done"}])
        assert (await alice.patch("/api/agents/run-1", json={"status": "completed"})).status_code == 200
        first, second, third = await receiver.wait_for(3, timeout=15)
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"]
        assert second.at - first.at < 2.0
        assert third.at - second.at < 10.0
        for request in (first, second, third):
            standardwebhooks.Webhook(hook["secret"]).verify(request.body, request.headers)
        await asyncio.sleep(0.3)
        deliveries = (await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
        assert [(d["attempt"], d["result"], d["status"]) for d in deliveries] == [
            (3, "delivered", 204),
            (2, "failed", 500),
            (1, "failed", 500),
        ]
        assert deliveries[1]["error"] == "answered 500 Internal Server Error"


@pytest.mark.slow  # waits seconds for deliveries, retries or a timeout
async def test_another_users_failed_agent_never_reaches_the_hook(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK)
    async with (
        Receiver() as alices,
        Receiver() as admins,
        server.client("alice") as alice,
        server.client("bob") as bob,
        httpx.AsyncClient(base_url=server.url, headers=server.headers("root", scope="admin")) as admin,
    ):
        await register(alice, alices.url, ["agent.failed"])
        everyone = await register(admin, admins.url, ["agent.failed"])
        assert everyone["all_agents"] is True
        await post_lines(bob, "bobs-run", [{"message": "hi"}])
        assert (await bob.patch("/api/agents/bobs-run", json={"status": "failed"})).status_code == 200
        await post_lines(alice, "alices-run", [{"message": "hi"}])
        assert (await alice.patch("/api/agents/alices-run", json={"status": "failed"})).status_code == 200
        (only,) = await alices.wait_for(1)
        assert only.json()["data"]["agent"]["id"] == "alices-run"
        both = await admins.wait_for(2)
        assert sorted(request.json()["data"]["agent"]["id"] for request in both) == ["alices-run", "bobs-run"]
        await asyncio.sleep(1.0)
        assert len(alices.received) == 1


@pytest.mark.slow  # waits seconds for deliveries, retries or a timeout
async def test_label_filter_and_timeouts_reach_the_hook(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK, **{"agents.timeout": "1s"})
    async with Receiver() as receiver, server.client("alice") as alice:
        await register(alice, receiver.url, ["agent.failed"], label="team=search")
        for agent_id, team in (("quiet-a", "search"), ("quiet-b", "billing")):
            body = {"id": agent_id, "labels": {"team": team}}
            assert (await alice.post("/api/agents", json=body)).status_code == 201
        (request,) = await receiver.wait_for(1, timeout=10)
        agent = request.json()["data"]["agent"]
        assert (agent["id"], agent["status"], agent["reason"]) == ("quiet-a", "failed", "timeout")
        await asyncio.sleep(1.5)
        assert len(receiver.received) == 1


@pytest.mark.slow  # waits seconds for deliveries, retries or a timeout
async def test_lines_matched_is_debounced_to_one_delivery_per_window(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK, **{"webhooks.match_window": "2s"})
    async with Receiver() as receiver, server.client("alice") as alice:
        hook = await register(alice, receiver.url, ["lines.matched"], min_level="ERROR", contains="timeout")
        await post_lines(alice, "run-1", [{"message": "started"}, {"message": "upstream timeout #0", "level": "ERROR"}])
        first = (await receiver.wait_for(1))[0]
        data = first.json()["data"]
        assert first.json()["type"] == "lines.matched"
        assert (data["count"], [line["message"] for line in data["lines"]]) == (1, ["upstream timeout #0"])
        # Within the window: 40 matching lines (and some that do not match) over several requests.
        for n in range(1, 41):
            lines = [{"message": f"upstream timeout #{n}", "level": "ERROR"}, {"message": "timeout", "level": "INFO"}]
            await post_lines(alice, "run-1", lines)
        second = (await receiver.wait_for(2, timeout=8))[1]
        # The window starts when the first delivery fell due, at the first matching line's commit.
        assert second.at - first.json()["data"]["lines"][0]["ts"] >= 1.9
        data = second.json()["data"]
        assert data["count"] == 40
        assert [line["message"] for line in data["lines"]] == [f"upstream timeout #{n}" for n in range(1, 21)]
        assert second.headers["webhook-id"] != first.headers["webhook-id"]
        await asyncio.sleep(2.5)
        assert len(receiver.received) == 2
        standardwebhooks.Webhook(hook["secret"]).verify(second.body, second.headers)


async def test_slack_format_posts_text_with_agent_status_link_and_lines(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK, **{"server.public_url": "https://logs.example.com"})
    async with Receiver() as receiver, server.client("alice") as alice:
        await register(alice, receiver.url, ["agent.failed"], format="slack")
        body = {"id": "nightly", "name": "Nightly crawl"}
        assert (await alice.post("/api/agents", json=body)).status_code == 201
        await post_lines(alice, "nightly", [{"message": f"page {n}"} for n in range(8)])
        await alice.patch("/api/agents/nightly", json={"status": "failed", "reason": "out of memory"})
        (request,) = await receiver.wait_for(1)
        document = request.json()
        assert list(document) == ["text"]
        text = document["text"]
        assert "'Nightly crawl' (nightly) failed: out of memory" in text
        assert "https://logs.example.com/?agent=nightly" in text
        code = text.split("```\n")[1]
        assert [row.split(maxsplit=2)[2] for row in code.strip("`\n").splitlines()] == [
            f"page {n}" for n in range(3, 8)
        ]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/",
        "http://100.64.0.1/",
    ],
)
async def test_internal_targets_are_refused_by_default_naming_the_setting(alice: httpx.AsyncClient, url: str) -> None:
    response = await alice.post("/api/webhooks", json={"url": url, "events": ["agent.failed"]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "target_not_allowed"
    assert "webhooks.allowed_targets" in error["message"]
    assert (await alice.get("/api/webhooks")).json() == {"webhooks": []}


@pytest.mark.slow  # waits seconds for deliveries, retries or a timeout
async def test_a_target_no_longer_allowed_is_refused_at_delivery(start_server: ServerFactory, tmp_path: Any) -> None:
    db = tmp_path / "shared.db"
    first = await start_server(db=db, **LOOPBACK)
    async with Receiver() as receiver:
        async with first.client("alice") as alice:
            hook = await register(alice, receiver.url, ["agent.failed"])
        await first.shutdown()
        # The same database, without the allowance: the check at delivery refuses what registration took.
        second = await start_server(db=db)
        async with second.client("alice") as alice:
            await post_lines(alice, "run-1", [{"message": "hi"}])
            await alice.patch("/api/agents/run-1", json={"status": "failed"})
            deadline = time.monotonic() + 5
            deliveries: list[dict[str, Any]] = []
            while not deliveries and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                deliveries = (await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
            assert deliveries[0]["result"] == "refused"
            assert "127.0.0.1" in deliveries[0]["error"] and "webhooks.allowed_targets" in deliveries[0]["error"]
            listed = (await alice.get("/api/webhooks")).json()["webhooks"][0]
            assert listed["failing_since"] is not None and listed["status"] == "ok"
        assert receiver.received == []


@pytest.mark.slow  # waits seconds for deliveries, retries or a timeout
async def test_metrics_count_deliveries_by_result_and_the_outbox(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK)
    async with Receiver([500]) as receiver, server.client("alice") as alice:
        hook = await register(alice, receiver.url, ["agent.failed"])
        response = await alice.post(f"/api/webhooks/{hook['id']}/test")
        assert response.status_code == 202 and response.json()["type"] == "webhook.test"
        first, _ = await receiver.wait_for(2, timeout=5)
        assert first.json()["type"] == "webhook.test" and first.headers["webhook-id"] == response.json()["id"]
        await asyncio.sleep(0.3)
        text = (await alice.get("/metrics")).text
        assert 'sentra_webhook_deliveries_total{result="failed"} 1.0' in text
        assert 'sentra_webhook_deliveries_total{result="delivered"} 1.0' in text
        assert "sentra_webhook_outbox " in text


@pytest.mark.slow  # a receiver that takes 3 s to answer
async def test_a_slow_receiver_never_holds_up_ingest_or_streams(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK)
    async with Receiver(delay=3.0) as receiver, server.client("alice") as alice:
        await register(alice, receiver.url, ["agent.failed"])
        for n in range(8):
            await post_lines(alice, f"run-{n}", [{"message": "x"}])
            assert (await alice.patch(f"/api/agents/run-{n}", json={"status": "failed"})).status_code == 200
        # Eight deliveries are waiting on the receiver now; ingest and reads answer as fast as ever.
        started = time.monotonic()
        for n in range(50):
            await post_lines(alice, "busy", [{"message": f"line {n}"}])
        assert (await alice.get("/api/agents/busy/logs")).json()["lines"][-1]["message"] == "line 49"
        assert time.monotonic() - started < 2.0
        assert len(await receiver.wait_for(8, timeout=10)) == 8


@pytest.mark.slow  # waits for two refused attempts
async def test_a_message_is_given_up_after_give_up_after(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK, **{"webhooks.give_up_after": "3s"})
    async with server.client("alice") as alice:
        nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: every attempt is refused
        hook = await register(alice, nobody, ["agent.failed"])
        await post_lines(alice, "run-1", [{"message": "x"}])
        await alice.patch("/api/agents/run-1", json={"status": "failed"})
        deadline = time.monotonic() + 8
        results: list[str] = []
        while "gave_up" not in results and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            deliveries = (await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
            results = [d["result"] for d in reversed(deliveries)]
        # The first retry came after 1 s; the second would come 5 s later, past the 3 s: given up instead.
        assert results == ["failed", "gave_up"]
        await asyncio.sleep(1.0)
        assert len((await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]) == 2
        # The outbox's size is read again every 2 s (worker.REFRESH): the gauge shows the emptied outbox by then.
        deadline = time.monotonic() + 5
        while "sentra_webhook_outbox 0.0" not in (metrics := (await alice.get("/metrics")).text):
            assert time.monotonic() < deadline, [line for line in metrics.splitlines() if "outbox" in line]
            await asyncio.sleep(0.3)


@pytest.mark.slow  # a receiver that answers after the 10 s time-out
async def test_a_receiver_that_does_not_answer_in_10_s_gets_the_message_again(start_server: ServerFactory) -> None:
    server = await start_server(**LOOPBACK)
    async with Receiver(delay=10.5) as receiver, server.client("alice") as alice:
        hook = await register(alice, receiver.url, ["agent.failed"])
        await post_lines(alice, "run-1", [{"message": "x"}])
        await alice.patch("/api/agents/run-1", json={"status": "failed"})
        first, second = await receiver.wait_for(2, timeout=15)
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert 10.0 <= second.at - first.at < 12.5  # the time-out, then the first retry within 2 s
        deliveries = (await alice.get(f"/api/webhooks/{hook['id']}/deliveries")).json()["deliveries"]
        assert (deliveries[-1]["result"], deliveries[-1]["error"]) == ("failed", "no answer within 10 s")
