"""The OpenAPI description of stopping a run and sharing one (sentra/api/runcontrol.py), merged into the document by
api/openapi.py."""

from __future__ import annotations

from sentra.schemas import JSON, Schema, obj, ref, t

AGENT = "/api/agents/{agent_id}"
SHARE_ID = t("string", pattern="^sh_[0-9a-f]{32}$", examples=["sh_0123456789abcdef0123456789abcdef"])

# (method, path) → (operationId, tag, error statuses, summary), as api/openapi.py's OPERATIONS.
OPERATIONS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("post", AGENT + "/stop"): ("stopAgent", "agents", "400 401 403 404 409", "Ask a running agent to stop."),
    ("post", AGENT + "/share"): ("shareAgent", "agents", "400 401 403 404", "A read-only link to one agent."),
    ("get", AGENT + "/shares"): ("listShares", "agents", "400 401 403 404", "The agent's share links."),
    ("delete", AGENT + "/share/{share_id}"): ("revokeShare", "agents", "400 401 403 404", "Revoke a share link."),
}

SHARE = {
    "id": SHARE_ID,
    "agent": t("string", "The agent it reads."),
    "created_by": t("string"),
    "created_at": t("number"),
    "expires_at": t("number", "Epoch seconds; the token is refused after it."),
}


def _answer(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def schemas() -> dict[str, Schema]:
    """The component schemas of share links."""
    return {
        "Share": obj(SHARE, "*", description="A share link, without its token."),
        "ShareList": obj({"shares": t("array", "Oldest first; expired links are left out.", items=ref("Share"))}, "*"),
        "ShareRequest": obj(
            {"ttl": t("string", 'How long the link reads, e.g. "24h" (default); at most auth.max_share_ttl.')}
        ),
        "NewShare": obj(
            {
                "id": SHARE_ID,
                "url": t("string", "Opens the viewer read-only on the agent; the token rides in the #fragment."),
                "token": t("string", "A bearer token that reads this agent only (shown this once)."),
                "expires_at": t("number"),
            },
            "*",
        ),
    }


def details() -> dict[str, Schema]:
    """Per operationId: its success responses, parameters and request body."""
    return {
        "stopAgent": {
            "description": "The owner or an admin. The record then shows stop_requested (and who asked), and every "
            'later ingest answer for the agent carries "stop_requested": true (an OTLP answer names the agent in '
            "its Sentra-Stop-Requested header); `sentra run` interrupts its command and fails the run with the "
            'reason "stopped by USER". Asking again keeps the first requester. A run that has finished: 409.',
            "responses": {"202": _answer("Asked; the agent record.", ref("Agent"))},
        },
        "shareAgent": {
            "description": "The owner only. The token reads this agent (its record, history, streams, attachments "
            "and volume) and nothing else: any other agent is 403, every write is 403, lists and search show only "
            "this agent. Needs a server that signs its own tokens.",
            "responses": {"201": _answer("The link and its token, shown this once.", ref("NewShare"))},
            "requestBody": {"required": False, "content": {JSON: {"schema": ref("ShareRequest")}}},
        },
        "listShares": {
            "description": "The owner or an admin.",
            "responses": {"200": _answer("The links that have not expired.", ref("ShareList"))},
        },
        "revokeShare": {
            "description": "The owner or an admin. Every Sentra process refuses the token (401 token_revoked) within "
            "a second, and the streams opened with it end.",
            "responses": {"204": {"description": "Revoked."}},
        },
    }
