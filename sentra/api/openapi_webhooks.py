"""The OpenAPI description of /api/webhooks: its operations, their answers and the webhook schemas, merged into
the document by api/openapi.py. The events themselves (sent to the webhooks) are in the schema WebhookEvent."""

from __future__ import annotations

from sentra.schemas import JSON, LEVEL, Schema, obj, ref, t

HOOKS = "/api/webhooks"
HOOK = HOOKS + "/{hook_id}"
HOOK_ID = t("string", pattern="^wh_[0-9a-f]{24}$", examples=["wh_0123456789abcdef01234567"])
EVENT_TYPE = t("string", enum=["agent.failed", "agent.completed", "lines.matched"])
ERRORS = "400 401 403 404"

# (method, path) → (operationId, tag, error statuses, summary), as api/openapi.py's OPERATIONS.
OPERATIONS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("get", HOOKS): ("listWebhooks", "webhooks", "401 403", "The caller's webhooks (everyone's for admin)."),
    ("post", HOOKS): ("createWebhook", "webhooks", "400 401 403", "Register a webhook; its secret, once."),
    ("get", HOOK): ("getWebhook", "webhooks", ERRORS, "One webhook."),
    ("patch", HOOK): ("updateWebhook", "webhooks", ERRORS, "Change a webhook's url, events or filters."),
    ("delete", HOOK): ("deleteWebhook", "webhooks", ERRORS, "Remove a webhook and what it had not delivered."),
    ("post", HOOK + "/test"): ("testWebhook", "webhooks", ERRORS, "Send a webhook.test event."),
    ("get", HOOK + "/deliveries"): ("listWebhookDeliveries", "webhooks", ERRORS, "The last delivery attempts."),
}


def _answer(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def details() -> dict[str, Schema]:
    """Per operationId: its success responses, parameters and request body."""
    hook = {"200": _answer("The webhook (never its secret).", ref("Webhook"))}
    return {
        "listWebhooks": {"responses": {"200": _answer("The webhooks, oldest first.", ref("WebhookList"))}},
        "createWebhook": {
            "description": "The URL must be http(s) and resolve to public addresses only, unless "
            "webhooks.allowed_targets names the host, the address or its network (400 target_not_allowed "
            "otherwise). An admin's webhook is triggered by every user's agents.",
            "responses": {
                "201": _answer("Registered: the webhook and its secret, shown this once.", ref("NewWebhook"))
            },
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("WebhookCreate")}}},
        },
        "getWebhook": {"responses": hook},
        "updateWebhook": {
            "responses": hook,
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("WebhookPatch")}}},
        },
        "deleteWebhook": {"responses": {"204": {"description": "Removed; its pending messages are dropped."}}},
        "testWebhook": {
            "description": "A webhook.test event goes through the outbox like any other; it shows in the deliveries.",
            "responses": {
                "202": _answer(
                    "Queued.", obj({"id": t("string", "Its webhook-id."), "type": {"const": "webhook.test"}}, "*")
                )
            },
        },
        "listWebhookDeliveries": {
            "responses": {"200": _answer("Newest first; the last 100 are kept.", ref("WebhookDeliveries"))},
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": t("integer", minimum=1, maximum=100, default=100),
                    "description": "How many.",
                }
            ],
        },
    }


def _settings(required: str) -> Schema:
    return obj(
        {
            "url": t("string", "Where events are POSTed: http:// or https://.", maxLength=2048),
            "events": t("array", items=EVENT_TYPE, minItems=1),
            "label": t(["string", "null"], "key=value: only agents with this label.", pattern="^[^=]+="),
            "format": t("string", "standard (Standard Webhooks JSON) or slack ({text}).", enum=["standard", "slack"]),
            "min_level": {
                "anyOf": [t("string"), t("integer", minimum=0), t("null")],
                "description": "lines.matched: lines at or above this level: a name in any case or a number.",
            },
            "contains": t(["string", "null"], "lines.matched: lines containing this (case ignored).", maxLength=256),
        },
        required,
    )


def schemas() -> dict[str, Schema]:
    """The webhook resources, request bodies and the events sent."""
    webhook = {
        "id": HOOK_ID,
        "url": t("string"),
        "events": t("array", items=EVENT_TYPE),
        "label": t(["string", "null"]),
        "format": t("string", enum=["standard", "slack"]),
        "min_level": {"anyOf": [LEVEL, t("null")]},
        "contains": t(["string", "null"]),
        "owner": t("string"),
        "all_agents": t("boolean", "An admin's webhook: every user's agents trigger it."),
        "created_at": t("number"),
        "updated_at": t("number"),
        "status": t(
            "string", "failing once deliveries have failed for webhooks.failing_after.", enum=["ok", "failing"]
        ),
        "failing_since": t(["number", "null"], "When the current run of failed attempts began."),
        "last_delivery_at": t(["number", "null"], "The last delivered attempt."),
    }
    secret = t("string", "whsec_ and base64: verify signatures with it. Shown once.", pattern="^whsec_")
    return {
        "Webhook": obj(webhook, "*"),
        "NewWebhook": obj({**webhook, "secret": secret}, "*"),
        "WebhookList": obj({"webhooks": t("array", items=ref("Webhook"))}, "*"),
        "WebhookCreate": _settings("url events"),
        "WebhookPatch": _settings(""),
        "WebhookDeliveries": obj(
            {
                "deliveries": t(
                    "array",
                    items=obj(
                        {
                            "id": t("string", "The message's webhook-id."),
                            "event": t("string"),
                            "attempt": t("integer", minimum=1),
                            "at": t("number"),
                            "result": t("string", enum=["delivered", "failed", "refused", "gave_up"]),
                            "status": t(["integer", "null"], "The receiver's HTTP status, if it answered."),
                            "error": t(["string", "null"]),
                        },
                        "*",
                    ),
                )
            },
            "*",
        ),
        "WebhookEvent": obj(
            {
                "type": t("string", enum=["agent.failed", "agent.completed", "lines.matched", "webhook.test"]),
                "timestamp": t("string", format="date-time"),
                "data": obj(
                    {
                        "agent": t("object", "The Agent, with url: its page in the viewer (server.public_url)."),
                        "lines": t(
                            "array", "The last 20 lines (lines.matched: the first 20 matching).", items=ref("Line")
                        ),
                        "count": t("integer", "lines.matched: how many lines matched.", minimum=1),
                    },
                    closed=False,
                ),
            },
            "*",
            description="What a webhook receives (format standard), signed per Standard Webhooks: webhook-id, "
            "webhook-timestamp, webhook-signature v1 (HMAC-SHA256).",
        ),
    }
