"""The delivery worker: claims due outbox messages, POSTs each to its webhook (connecting only to addresses the
target policy allowed, checked as the connection is made) and records the attempt, retrying on the schedule below.

It is a task of its own with its own HTTP client, so ingest and streams never wait for a receiver; several
processes on one PostgreSQL database each run one, and a claimed message is delivered by one of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

from sentra.config import Config
from sentra.metrics import Metrics
from sentra.storage.base import Storage
from sentra.webhooks.formats import render
from sentra.webhooks.records import Attempt, Message
from sentra.webhooks.targets import CheckedResolver, TargetPolicy, TargetRefused

log = logging.getLogger("sentra.webhooks")
# Seconds from a failed attempt to the next: the first retry within 2 s, the second within 10 s, then backing off
# to once an hour until webhooks.give_up_after has passed since the event.
RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0)
HOURLY = 3600.0
REQUEST_TIMEOUT = 10.0
LEASE = 60.0  # a claim outlives any attempt; a process that dies holding one frees it after this
POLL = 0.5  # how often the outbox is looked at: other processes' events and due retries wait no longer
REFRESH = 2.0  # how often the lines.matched webhooks and the outbox size are read again
MAX_IN_FLIGHT = 16
CLOSE_GRACE = 2.0


def retry_delay(attempts: int) -> float:
    """Seconds until the next attempt after `attempts` failed ones."""
    return RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else HOURLY


def describe(exc: BaseException) -> str:
    """An attempt's error, as the deliveries list shows it."""
    if isinstance(exc, HTTPTimeoutError):
        return f"no answer within {REQUEST_TIMEOUT:.0f} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, HTTPClientError):
        return f"HTTP error: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class DeliveryWorker:
    """Delivers the outbox of one storage until closed."""

    def __init__(self, store: Storage, config: Config, viewer_url: str, metrics: Metrics | None = None) -> None:
        self.webhooks = store.webhooks
        self.policy = TargetPolicy.from_entries(config["webhooks.allowed_targets"])
        self.give_up_after: float = config["webhooks.give_up_after"]
        self.window: float = config["webhooks.match_window"]
        self.viewer_url = viewer_url
        self.metrics = metrics
        self.claimer = uuid.uuid4().hex
        self._client: SimpleAsyncHTTPClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Free claims a dead process left (where they cannot be another's), read the webhooks, start delivering."""
        self._client = SimpleAsyncHTTPClient(
            force_instance=True, resolver=CheckedResolver(policy=self.policy), max_clients=MAX_IN_FLIGHT
        )
        await self.webhooks.release_claims()
        await self.webhooks.reload_hooks(self.window)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop claiming; attempts under way get CLOSE_GRACE seconds to finish and be recorded, the rest are
        abandoned, and their messages attempted again once their claims run out."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=CLOSE_GRACE)
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        while True:
            claimed: list[Message] = []
            room = MAX_IN_FLIGHT - len(self._in_flight)
            try:
                if loop.time() - refreshed >= REFRESH:
                    refreshed = loop.time()
                    await self.webhooks.reload_hooks()
                    if self.metrics is not None:
                        self.metrics.webhook_outbox.set(await self.webhooks.outbox_size())
                if room > 0:
                    claimed = await self.webhooks.claim(room, LEASE, self.claimer)
            except Exception:
                log.exception("reading the webhook outbox failed; will retry")
            for message in claimed:
                task = asyncio.create_task(self._deliver(message))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if room > 0 and len(claimed) == room:
                continue  # a full batch: there may be more due
            await asyncio.sleep(POLL)

    async def _deliver(self, message: Message) -> None:
        assert self._client is not None
        started = time.time()
        body, headers = render(message, self.viewer_url, started)
        request = HTTPRequest(
            message.hook.url,
            method="POST",
            body=body,
            headers=headers,
            connect_timeout=REQUEST_TIMEOUT,
            request_timeout=REQUEST_TIMEOUT,
            follow_redirects=False,
            streaming_callback=lambda chunk: None,  # the receiver's answer is not kept
        )
        status: int | None = None
        error: str | None = None
        result = "failed"
        try:
            response = await self._client.fetch(request, raise_error=False)
        except TargetRefused as exc:
            result, error = "refused", str(exc)
        except Exception as exc:
            error = describe(exc)
        else:
            status = response.code
            if 200 <= status < 300:
                result = "delivered"
            else:
                error = f"answered {status} {response.reason}"
        await self._record(message, Attempt(message.id, message.event, message.attempts + 1, started, result,
                                            status, error))  # fmt: skip

    async def _record(self, message: Message, attempt: Attempt) -> None:
        next_due: float | None = None
        if attempt.result != "delivered":
            next_due = time.time() + retry_delay(attempt.attempt)
            if next_due > message.created_at + self.give_up_after:
                attempt.result, next_due = "gave_up", None
            log.warning(
                "webhook %s: %s attempt %d of %s %s: %s",
                message.hook.id, message.event, attempt.attempt, message.id, attempt.result, attempt.error,
            )  # fmt: skip
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(attempt.result).inc()
        try:
            await self.webhooks.record(message, attempt, next_due, self.claimer)
        except Exception:
            # The claim runs out and the message is attempted again: at least once.
            log.exception("recording a webhook delivery failed")
