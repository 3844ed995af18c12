"""POST /api/agents/{id}/attachments (a file, stored with the line that announces it) and
GET /api/agents/{id}/attachments/{attachment_id} (its bytes, for whoever may read the agent).

An upload is checked as ingest is (who, may they write, whose agent, how large: on the headers, before the body is
read) and goes through the same group commit, so the agent is created by it, the line is live in every stream like
any other, and the file and the line are committed together or not at all.
"""

from __future__ import annotations

import time

from sentra.api.base import ApiHandler
from sentra.api.ingest import IngestHandler, check_rate
from sentra.attachments import (
    check_content_type,
    check_name,
    content_disposition,
    is_attachment_id,
    is_inline,
    new_attachment,
)
from sentra.errors import BadRequest, NotFound
from sentra.lines import NewLines, line_from_object
from sentra.storage.appends import AppendJob

# Attachments never change: a browser may keep one for a year without asking again. `private`: it is one
# user's file, not for shared caches.
CACHE_CONTROL = "private, max-age=31536000, immutable"


class AttachmentUploadHandler(IngestHandler):
    """Store the body as a file of the agent, with a line carrying its record; 201 with the record and the seq."""

    def body_limit(self) -> int:
        """limits.max_attachment_size."""
        return int(self.config["limits.max_attachment_size"])

    async def post(self, agent_id: str) -> None:
        """Store the file and its line in one commit; answer once both are durable."""
        # As sent: query arguments are otherwise read with control characters as spaces, and stripped.
        sent = self.arguments.get("name")
        try:
            name = check_name(sent[-1].decode("utf-8") if sent else None)
        except UnicodeDecodeError:
            raise BadRequest("name must be UTF-8 text", code="invalid_name") from None
        content_type = check_content_type(self.header("Content-Type"))
        if not self.body:
            raise BadRequest("the body is empty: send the file's bytes as the request body", code="empty_attachment")
        attachment = new_attachment(name, content_type, self.body)
        record = attachment.record(agent_id)
        message = self.query_argument("message") or f"attachment {name}"
        # The step it was sent in (the client's agent.step()): the viewer shows the file among that step's lines.
        step = self.query_argument("step")
        fields = {"attachment": record, "step": step} if step else {"attachment": record}
        try:
            line = line_from_object(
                {"message": message, "fields": fields},
                time.time(),
                self.config["limits.max_line_size"],
            )
        except ValueError as exc:
            raise BadRequest(f"message: {exc}", code="invalid_line") from None
        principal = self.principal
        await check_rate(self.services.rate, principal, 1)
        job = AppendJob(
            agent_id,
            principal.subject,
            principal.is_admin,
            NewLines.of([line]),
            None,
            "",
            {},
            attachments=(attachment,),
        )
        result = await self.services.store.queue_append(job)
        self.write_json({**record, "seq": result.first_seq}, status=201)


class AttachmentHandler(ApiHandler):
    """An attachment's bytes: images shown in place, anything else downloaded and sandboxed."""

    async def get(self, agent_id: str, attachment_id: str) -> None:
        """The stored bytes with their type (HEAD: the headers); 404 for an id the agent has no attachment of."""
        agent = await self.agent_for(agent_id)
        found = await self.store.attachments.get(agent.pk, attachment_id) if is_attachment_id(attachment_id) else None
        if found is None:
            raise NotFound(f"agent {agent_id!r} has no attachment {attachment_id[:64]!r}", code="attachment_not_found")
        inline = is_inline(found.content_type)
        self.set_header("Content-Type", found.content_type)
        self.set_header("Content-Disposition", content_disposition(found.name, inline))
        if not inline:
            # SVG and HTML can run script: opened from Sentra's origin, with its cookie, they must not.
            self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("Cache-Control", CACHE_CONTROL)
        self.set_header("Etag", f'"{attachment_id}"')
        self.end(found.data)
