"""The webhook outbox below the API: events written by storage in the transactions that cause them, delivered by
the worker to a real receiver, signed as the Standard Webhooks library verifies; and the target checks."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import standardwebhooks
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from webhook_receiver import Receiver

from sentra.config import load_config
from sentra.lines import NewLine
from sentra.storage.sqlite import Store
from sentra.webhooks.records import Webhook
from sentra.webhooks.signing import new_secret, sign
from sentra.webhooks.targets import CheckedResolver, TargetPolicy, TargetRefused, kind_of
from sentra.webhooks.worker import DeliveryWorker, retry_delay


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open SQLite store."""
    opened = Store(tmp_path / "sentra.db")
    await opened.open()
    yield opened
    await opened.close()


def hook_for(url: str, events: list[str], **fields: object) -> Webhook:
    """alice's webhook."""
    now = time.time()
    return Webhook("wh_" + "0" * 24, "alice", False, url, events, new_secret(), created_at=now, updated_at=now,
                   **fields)  # type: ignore[arg-type]  # fmt: skip


def line(message: str, level: str = "INFO") -> NewLine:
    """A line to ingest."""
    return NewLine(time.time(), level, message, "", {})


def test_signature_is_what_the_standard_webhooks_library_verifies() -> None:
    secret = new_secret()
    body = b'{"type":"agent.failed","timestamp":"2026-01-01T00:00:00.000Z","data":{}}'
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, "msg_1", now, body),
    }
    assert standardwebhooks.Webhook(secret).verify(body, headers)["type"] == "agent.failed"
    headers["webhook-signature"] = sign(new_secret(), "msg_1", now, body)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, headers)


def test_retries_come_within_2_s_then_10_s_and_back_off_to_hourly() -> None:
    assert retry_delay(1) <= 2 and retry_delay(2) <= 10
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[-1] == 3600


@pytest.mark.parametrize(
    ("address", "kind"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("169.254.169.254", "cloud metadata"),
     ("fd00:ec2::254", "cloud metadata"), ("100.64.1.1", "shared (CGNAT)"), ("224.0.0.1", "multicast"),
     ("0.0.0.0", "unspecified"), ("::ffff:127.0.0.1", "loopback"), ("fe80::1", "link-local"),
     ("fc00::1", "unique-local"), ("8.8.8.8", None), ("2606:4700::1111", None)],
)  # fmt: skip
def test_addresses_other_than_public_ones_are_named(address: str, kind: str | None) -> None:
    assert kind_of(ipaddress.ip_address(address)) == kind


async def test_the_resolver_connects_only_to_checked_addresses(store: Store) -> None:
    """The HTTP client resolves through the policy: a host name resolving to loopback is refused at connection
    time unless the setting names it, and then the address checked is the one connected to."""
    async with Receiver() as receiver:
        url = f"http://localhost:{receiver.port}/hook"
        for policy, refused in (
            (TargetPolicy.from_entries([]), True),
            (TargetPolicy.from_entries(["localhost"]), False),
        ):
            client = SimpleAsyncHTTPClient(force_instance=True, resolver=CheckedResolver(policy=policy))
            try:
                if refused:
                    with pytest.raises(TargetRefused, match=r"webhooks\.allowed_targets"):
                        await client.fetch(HTTPRequest(url, method="POST", body=b"{}"))
                else:
                    assert (await client.fetch(HTTPRequest(url, method="POST", body=b"{}"))).code == 204
            finally:
                client.close()
        assert len(receiver.received) == 1


async def test_events_enter_the_outbox_with_their_commit_and_the_worker_delivers_them(store: Store) -> None:
    config = load_config(None, {"webhooks.allowed_targets": ["127.0.0.1"], "webhooks.match_window": "1m"})
    async with Receiver() as receiver:
        hook = hook_for(receiver.url, ["agent.failed", "lines.matched"], min_level=40)
        await store.webhooks.create(hook)
        await store.append_lines("run-1", "alice", [line(f"step {n}") for n in range(5)] + [line("boom", "ERROR")])
        await store.append_lines("run-1", "alice", [line("again", "ERROR")])
        await store.update_agent("run-1", status="failed", name=None, labels=None, reason="crash")
        await store.append_lines("bobs", "bob", [line("bob's error", "ERROR")])
        # Written before any worker ran: the outbox holds them.
        assert await store.webhooks.outbox_size() == 2
        worker = DeliveryWorker(store, config, "http://sentra.test/")
        await worker.start()
        try:
            matched, failed = sorted(await receiver.wait_for(2), key=lambda r: r.json()["type"], reverse=True)
        finally:
            await worker.close()
        verifier = standardwebhooks.Webhook(hook.secret)
        assert verifier.verify(matched.body, matched.headers)["data"]["count"] == 2
        event = verifier.verify(failed.body, failed.headers)
        assert [entry["message"] for entry in event["data"]["lines"]] == [
            *(f"step {n}" for n in range(5)),
            "boom",
            "again",
        ]
        assert await store.webhooks.outbox_size() == 0
