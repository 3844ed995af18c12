"""The OpenAPI description of an agent's attachments: upload and read, merged into the document by api/openapi.py."""

from __future__ import annotations

from sentra.schemas import JSON, Schema, obj, t

ATTACHMENTS = "/api/agents/{agent_id}/attachments"
ATTACHMENT = ATTACHMENTS + "/{attachment_id}"
ATTACHMENT_ID = t("string", pattern="^[0-9a-f]{32}$", examples=["0123456789abcdef0123456789abcdef"])

# (method, path) → (operationId, tag, error statuses, summary), as api/openapi.py's OPERATIONS.
OPERATIONS: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("post", ATTACHMENTS): (
        "uploadAttachment",
        "logs",
        "400 401 403 409 413 429 503 507",
        "Store a file (a screenshot, a report) with a line announcing it.",
    ),
    ("get", ATTACHMENT): ("getAttachment", "logs", "400 401 403 404", "An attachment's bytes."),
}

RECORD = {
    "id": ATTACHMENT_ID,
    "name": t("string", minLength=1, maxLength=255),
    "content_type": t("string"),
    "size": t("integer", minimum=0),
    "url": t("string", "The path to GET the bytes from: /api/agents/{agent_id}/attachments/{id}."),
}


def schemas() -> dict[str, Schema]:
    """The component schemas: what a line's fields.attachment holds, and the upload's answer."""
    return {
        "Attachment": obj(RECORD, "*", description="An attachment, as a line's fields.attachment carries it."),
        "NewAttachment": obj(
            {**RECORD, "seq": t("integer", "The seq of the line that carries it.", minimum=1)},
            "*",
            description="The stored attachment and its line.",
        ),
    }


def details() -> dict[str, Schema]:
    """Per operationId: its success responses, parameters and request body."""
    binary = {"schema": t("string", format="binary")}
    return {
        "uploadAttachment": {
            "description": "The body is the file (not empty), its Content-Type the file's (application/octet-stream "
            "if none). "
            "The agent is created as by ingest and gets a line whose message is `message` and whose "
            "fields.attachment is the attachment; the file and the line are stored together or not at all. Above "
            "limits.max_attachment_size: 413, nothing stored.",
            "responses": {
                "201": {
                    "description": "Stored, with its line.",
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/NewAttachment"}}},
                }
            },
            "parameters": [
                {
                    "name": "name",
                    "in": "query",
                    "required": True,
                    "schema": t("string", minLength=1, maxLength=255),
                    "description": "The file's name (no control characters).",
                },
                {
                    "name": "message",
                    "in": "query",
                    "schema": t("string"),
                    "description": 'The line\'s message; default "attachment NAME".',
                },
                {
                    "name": "step",
                    "in": "query",
                    "schema": t("string"),
                    "description": "The step the file belongs to, kept as the line's fields.step.",
                },
            ],
            "requestBody": {"required": True, "content": {"*/*": binary}},
        },
        "getAttachment": {
            "description": "For whoever may read the agent. PNG, JPEG, GIF and WebP are shown inline; any other "
            "type (SVG and HTML included) comes with Content-Disposition: attachment and "
            "Content-Security-Policy: sandbox. Attachments never change: cached for a year.",
            "responses": {
                "200": {
                    "description": "The bytes, with their stored type.",
                    "headers": {
                        "Content-Disposition": {
                            "description": "inline (images) or attachment, with the file's name.",
                            "schema": t("string"),
                            "required": True,
                        },
                        "Cache-Control": {
                            "description": "private, max-age=31536000, immutable",
                            "schema": t("string"),
                            "required": True,
                        },
                    },
                    # The file as its uploader sent it, under the type they gave: no schema to hold it to.
                    "content": {"*/*": {}},
                }
            },
        },
    }
