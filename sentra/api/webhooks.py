"""/api/webhooks: register, list, change, remove and test the caller's webhooks, and list their last deliveries.

Managing webhooks takes the logs:read scope: a webhook sends only what its owner may read (its own agents' status
and lines, every agent's for an admin, whose webhooks all agents trigger). A stream ticket cannot manage them.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from sentra.api.base import ApiHandler
from sentra.auth import Principal
from sentra.errors import BadRequest, Forbidden, NotFound
from sentra.lines import LEVELS, parse_level
from sentra.scopes import SCOPE_READ
from sentra.webhooks.records import EVENT_TYPES, FORMATS, LINES_MATCHED, WEBHOOK_TEST, Webhook
from sentra.webhooks.signing import new_secret
from sentra.webhooks.targets import TargetPolicy, TargetRefused, check_url

HOOK_ID = re.compile(r"wh_[0-9a-f]{24}")
FIELDS = ("url", "events", "label", "format", "min_level", "contains")
CLEARABLE = ("label", "min_level", "contains")  # PATCH takes null for these: the filter is removed
MAX_CONTAINS = 256
DELIVERIES_LISTED = 100
LEVEL_NAMES = {number: name for name, number in LEVELS.items()}


def hook_json(hook: Webhook, failing_after: float, now: float) -> dict[str, Any]:
    """A webhook as the API shows it (never its secret)."""
    failing = hook.failing_since is not None and now - hook.failing_since >= failing_after
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "label": hook.label,
        "format": hook.format,
        "min_level": LEVEL_NAMES.get(hook.min_level) if hook.min_level else None,
        "contains": hook.contains,
        "owner": hook.owner,
        "all_agents": hook.all_agents,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
        "status": "failing" if failing else "ok",
        "failing_since": hook.failing_since,
        "last_delivery_at": hook.last_delivery_at,
    }


def apply_fields(hook: Webhook, body: dict[str, Any]) -> None:
    """Set the webhook's settings from a POST or PATCH body; BadRequest naming what is wrong."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; a webhook takes {', '.join(FIELDS)}")
    for name, value in body.items():
        if value is None and name not in CLEARABLE:
            raise BadRequest(f"{name!r} must not be null")
    if "url" in body:
        if not isinstance(body["url"], str):
            raise BadRequest("'url' must be a string: an http:// or https:// URL", code="invalid_url")
        try:
            check_url(body["url"])
        except TargetRefused as exc:
            raise BadRequest(f"'url': {exc}", code="invalid_url") from None
        hook.url = body["url"]
    if "events" in body:
        hook.events = _events(body["events"])
    if "label" in body:
        hook.label = _label(body["label"])
    if "format" in body:
        if body["format"] not in FORMATS:
            raise BadRequest(f"'format' must be one of {', '.join(FORMATS)}", code="invalid_format")
        hook.format = body["format"]
    if "min_level" in body:
        hook.min_level = 0 if body["min_level"] is None else _level(body["min_level"])
    if "contains" in body:
        contains = body["contains"]
        if contains is not None and (not isinstance(contains, str) or not 1 <= len(contains) <= MAX_CONTAINS):
            raise BadRequest(f"'contains' must be a string of 1 to {MAX_CONTAINS} characters")
        hook.contains = contains
    wants_lines = LINES_MATCHED in hook.events
    if wants_lines and not hook.min_level and hook.contains is None:
        raise BadRequest("lines.matched needs 'min_level' and/or 'contains': which lines should trigger it?")
    if not wants_lines and (hook.min_level or hook.contains is not None):
        raise BadRequest("'min_level' and 'contains' choose the lines of lines.matched: add it to 'events'")


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise BadRequest(
            f"'events' must be a non-empty list of event types: {', '.join(EVENT_TYPES)}", code="invalid_events"
        )
    for event in value:
        if event not in EVENT_TYPES:
            raise BadRequest(
                f"unknown event type {event[:60]!r}; a webhook takes {', '.join(EVENT_TYPES)}", code="invalid_events"
            )
    return list(dict.fromkeys(value))


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "=" not in value or not value.partition("=")[0] or len(value) > 1200:
        raise BadRequest(f"'label' must look like key=value, not {str(value)[:60]!r}", code="invalid_label")
    return value


def _level(value: Any) -> int:
    try:
        return LEVELS[parse_level(value)]
    except ValueError as exc:
        raise BadRequest(f"'min_level': {exc}", code="invalid_level") from None


class WebhookChecks(ApiHandler):
    """Who may manage webhooks, and the caller's webhook named in the path."""

    def manager(self) -> Principal:
        """The caller, if it may manage webhooks (logs:read, not a stream ticket)."""
        principal = self.principal
        principal.require(SCOPE_READ)
        if principal.agent is not None:
            raise Forbidden("a stream ticket or share link cannot manage webhooks", code="insufficient_scope")
        return principal

    async def hook_for(self, hook_id: str) -> Webhook:
        """The webhook, after checking the caller, the id, its existence and its owner, in that order."""
        principal = self.manager()
        if not HOOK_ID.fullmatch(hook_id):
            raise BadRequest(f"invalid webhook id {hook_id[:60]!r}", code="invalid_webhook_id")
        hook = await self.store.webhooks.get(hook_id)
        if hook is None:
            raise NotFound(f"no webhook {hook_id!r}", code="webhook_not_found")
        if hook.owner != principal.subject and not principal.is_admin:
            raise Forbidden(f"webhook {hook_id!r} belongs to another user", code="not_owner")
        return hook

    async def check_target(self, url: str) -> None:
        """BadRequest unless `url` resolves to addresses webhooks may be sent to."""
        try:
            await TargetPolicy.from_entries(self.config["webhooks.allowed_targets"]).check(url)
        except TargetRefused as exc:
            raise BadRequest(f"'url': {exc}", code="target_not_allowed") from None

    def hook_json(self, hook: Webhook) -> dict[str, Any]:
        """The webhook as answered."""
        return hook_json(hook, self.config["webhooks.failing_after"], time.time())


class WebhooksHandler(WebhookChecks):
    """GET lists the caller's webhooks (everyone's for admin); POST registers one."""

    async def get(self) -> None:
        """{"webhooks": [...]}, oldest first, without secrets."""
        principal = self.manager()
        hooks = await self.store.webhooks.hooks_of(None if principal.is_admin else principal.subject)
        self.write_json({"webhooks": [self.hook_json(hook) for hook in hooks]})

    async def post(self) -> None:
        """Register a webhook: 201 with its id and its secret, which is never shown again."""
        principal = self.manager()
        body = self.json_body()
        for name in ("url", "events"):
            if name not in body:
                raise BadRequest(f"a webhook needs {name!r}")
        now = time.time()
        hook = Webhook(
            "wh_" + secrets.token_hex(12), principal.subject, principal.is_admin, "", [], new_secret(),
            created_at=now, updated_at=now,
        )  # fmt: skip
        apply_fields(hook, body)
        await self.check_target(hook.url)
        await self.store.webhooks.create(hook)
        self.set_header("Location", f"/api/webhooks/{hook.id}")
        self.write_json({**self.hook_json(hook), "secret": hook.secret}, status=201)


class WebhookHandler(WebhookChecks):
    """GET, PATCH and DELETE one webhook."""

    async def get(self, hook_id: str) -> None:
        """The webhook, without its secret."""
        self.write_json(self.hook_json(await self.hook_for(hook_id)))

    async def patch(self, hook_id: str) -> None:
        """Change url, events, label, format, min_level or contains (null clears the last three)."""
        hook = await self.hook_for(hook_id)
        body = self.json_body()
        if not body:
            raise BadRequest(f"PATCH needs a JSON object with any of {', '.join(FIELDS)}")
        apply_fields(hook, body)
        if "url" in body:
            await self.check_target(hook.url)
        hook.updated_at = time.time()
        await self.store.webhooks.update(hook)
        self.write_json(self.hook_json(hook))

    async def delete(self, hook_id: str) -> None:
        """Remove the webhook; what it had not delivered yet is dropped."""
        await self.hook_for(hook_id)
        await self.store.webhooks.delete(hook_id)
        self.set_status(204)


class WebhookTestHandler(WebhookChecks):
    """POST sends a webhook.test event to the webhook, through the outbox like any other."""

    async def post(self, hook_id: str) -> None:
        """202 with the test message's webhook-id; its delivery shows in the deliveries list."""
        hook = await self.hook_for(hook_id)
        message_id = await self.store.webhooks.queue_test(hook)
        self.write_json({"id": message_id, "type": WEBHOOK_TEST}, status=202)


class WebhookDeliveriesHandler(WebhookChecks):
    """GET lists the webhook's last delivery attempts."""

    async def get(self, hook_id: str) -> None:
        """{"deliveries": [...]}, newest first: time, event, attempt, result, HTTP status and error."""
        await self.hook_for(hook_id)
        limit = min(self.int_argument("limit", DELIVERIES_LISTED, minimum=1) or 1, DELIVERIES_LISTED)
        attempts = await self.store.webhooks.deliveries(hook_id, limit)
        self.write_json({"deliveries": [attempt.to_json() for attempt in attempts]})
