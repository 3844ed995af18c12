"""Attachments apart from any database: a file an agent sends (a screenshot, a report), the line that carries its
record, and the screenshots ingest finds as data URLs in a line's fields.

An attachment is stored in the same transaction as the line that announces it (storage/*_attachments.py), so a
reader never sees one without the other.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sentra.errors import BadRequest, PayloadTooLarge
from sentra.line_values import encode_fields
from sentra.lines import NewLines, parse_body

# Shown in the browser; every other type (SVG and HTML included, which can run script) is downloaded in a sandbox.
INLINE_TYPES = frozenset(("image/png", "image/jpeg", "image/gif", "image/webp"))
MAX_NAME_LENGTH = 255
MAX_TYPE_LENGTH = 255
_ID = re.compile(r"[0-9a-f]{32}")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;[ -~]*)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A field value ingest stores as an attachment: what browser-use and similar agents send screenshots as.
_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,")
# One scan of a whole ingest body before any per-field work: a body without it has no data URL, however its JSON
# spells the "/" (some encoders write "\\/"). 0.2 us for a one-line body, 31 us for 1,000 lines (90 KB).
DATA_URL_MARK = b"data:image"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file to store with the line at index `line` of its ingest request."""

    id: str
    name: str
    content_type: str
    data: bytes
    line: int = 0

    def record(self, agent_id: str) -> dict[str, Any]:
        """The attachment as a line's fields.attachment carries it and the API answers it."""
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.data),
            "url": attachment_url(agent_id, self.id),
        }


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """An attachment read back: what GET serves."""

    name: str
    content_type: str
    data: bytes


class AttachmentStore(Protocol):
    """Reads of stored attachments (storage/sqlite_attachments.py, storage/postgres_attachments.py); they are
    written by the group commit with their line, and removed with their agent or by retention."""

    async def get(self, agent_pk: int, attachment_id: str) -> StoredAttachment | None:
        """The attachment `attachment_id` of the agent `agent_pk`, or None."""

    async def totals(self) -> tuple[int, int]:
        """How many attachments are stored, and their bytes."""


def attachment_url(agent_id: str, attachment_id: str) -> str:
    """The path an attachment is read at (agent ids need no escaping in a path)."""
    return f"/api/agents/{agent_id}/attachments/{attachment_id}"


def new_attachment(name: str, content_type: str, data: bytes, line: int = 0) -> Attachment:
    """An attachment with a new id."""
    return Attachment(uuid.uuid4().hex, name, content_type, data, line)


def is_attachment_id(text: str) -> bool:
    """Whether `text` can be an attachment id (anything else is no attachment: 404)."""
    return _ID.fullmatch(text) is not None


def is_inline(content_type: str) -> bool:
    """Whether a browser may show this type in place: the four image formats no script can run in."""
    return content_type.split(";", 1)[0].strip().lower() in INLINE_TYPES


def check_name(name: str | None) -> str:
    """The ?name= of an upload; BadRequest unless it is 1-255 characters without control characters."""
    if not name:
        raise BadRequest("name is required: POST .../attachments?name=screenshot.png", code="invalid_name")
    if len(name) > MAX_NAME_LENGTH or _CONTROL.search(name):
        raise BadRequest(f"name must be 1-{MAX_NAME_LENGTH} characters without control characters", code="invalid_name")
    return name


def check_content_type(value: str | None) -> str:
    """The Content-Type of an upload as stored (application/octet-stream when none was sent); BadRequest unless it
    is a media type such as image/png."""
    if value is None or not value.strip():
        return "application/octet-stream"
    value = value.strip()
    if len(value) > MAX_TYPE_LENGTH or not _CONTENT_TYPE.fullmatch(value):
        raise BadRequest(
            f"Content-Type {value[:80]!r} is not a media type such as image/png", code="invalid_content_type"
        )
    return value


def check_size(size: int, limit: int, what: str) -> None:
    """PayloadTooLarge if an attachment of `size` bytes is above limits.max_attachment_size."""
    if size > limit:
        raise PayloadTooLarge(
            f"{what} is {size} bytes, above limits.max_attachment_size ({limit})", code="attachment_too_large"
        )


def content_disposition(name: str, inline: bool) -> str:
    """A Content-Disposition naming the file: an ASCII fallback and the exact name (RFC 6266, RFC 8187)."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    exact = "".join(c if c.isascii() and (c.isalnum() or c in "!#$&+-.^_`|~") else _percent(c) for c in name)
    return f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def _percent(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def lines_with_images(
    body: bytes, content_type: str, agent_id: str, *, max_line_size: int, max_lines: int, max_attachment_size: int
) -> tuple[NewLines, tuple[Attachment, ...]]:
    """The lines of an ingest body holding a data URL, each `data:image/...;base64,` field value replaced by its
    attachment's record; the attachments to store with them. A line is held to max_line_size once its images
    are out of it, so a line may bring a screenshot larger than a line."""
    # The body as a whole is already bounded by limits.max_body_size; each line is checked below, images out.
    lines = list(parse_body(body, content_type, max_line_size=len(body) + 1, max_lines=max_lines))
    attachments: list[Attachment] = []
    for index, line in enumerate(lines):
        found = False
        for key, value in line.fields.items():
            if type(value) is not str:
                continue
            matched = _DATA_URL.match(value)
            if matched is None:
                continue
            where = f"line {index + 1}, field {key!r}"
            try:
                data = base64.b64decode(value[matched.end() :], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"{where}: the data URL's base64 is not valid", code="invalid_base64") from None
            check_size(len(data), max_attachment_size, f"{where}'s image")
            attachment = new_attachment(key, matched.group(1), data, index)
            attachments.append(attachment)
            line.fields[key] = attachment.record(agent_id)
            found = True
        if found:
            line.fields_json = encode_fields(line.fields)
        size = len(line.message.encode("utf-8")) + len((line.fields_json or "").encode("utf-8"))
        if size > max_line_size:
            raise BadRequest(
                f"line {index + 1}: line is {size} bytes, above the limit of {max_line_size}", code="invalid_line"
            )
    return NewLines.of(lines), tuple(attachments)
