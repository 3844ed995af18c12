"""The body and headers of one delivery attempt: the Standard Webhooks JSON event, or `{"text"}` for chat incoming
webhooks (Slack, Mattermost, Rocket.Chat), both signed the Standard Webhooks way."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sentra import __version__
from sentra.webhooks.records import LINES_MATCHED, WEBHOOK_TEST, Message
from sentra.webhooks.signing import sign

CHAT_LINES = 5  # lines a chat message shows; the standard payload carries up to 20
CHAT_LINE_LENGTH = 200
USER_AGENT = f"Sentra-Webhooks/{__version__}"


def agent_link(viewer_url: str, agent_id: str) -> str:
    """The agent's page in the viewer."""
    return f"{viewer_url.rstrip('/')}/?agent={quote(agent_id, safe='')}"


def event_with_links(message: Message, viewer_url: str) -> dict[str, Any]:
    """The stored event, its agent given the `url` of its page in the viewer."""
    event = copy.deepcopy(message.payload)
    agent = event["data"].get("agent")
    if agent is not None:
        agent["url"] = agent_link(viewer_url, agent["id"])
    return event


def chat_text(event: dict[str, Any]) -> str:
    """A message a person reads in a chat channel: what happened to which agent, its link, its last lines."""
    data = event["data"]
    if event["type"] == WEBHOOK_TEST:
        return f"Sentra: test event for webhook {data['webhook']}. {data['message']}"
    agent = data["agent"]
    who = f"agent {agent['name'] or agent['id']!r}" + (f" ({agent['id']})" if agent["name"] else "")
    if event["type"] == LINES_MATCHED:
        head = f"Sentra: {data['count']} matching line{'s' if data['count'] != 1 else ''} in {who} [{agent['status']}]"
        shown = data["lines"][:CHAT_LINES]
    else:
        head = f"Sentra: {who} {agent['status']}" + (f": {agent['reason']}" if agent["reason"] else "")
        shown = data["lines"][-CHAT_LINES:]
    text = f"{head}\n{agent['url']}"
    if shown:
        rows = [_chat_line(line) for line in shown]
        text += "\n```\n" + "\n".join(rows) + "\n```"
    return text


def _chat_line(line: dict[str, Any]) -> str:
    clock = datetime.fromtimestamp(line["ts"], UTC).strftime("%H:%M:%S")
    message = line["message"].replace("```", "'''")
    if len(message) > CHAT_LINE_LENGTH:
        message = message[: CHAT_LINE_LENGTH - 1] + "…"
    return f"{clock} {line['level']:<8} {message}"


def render(message: Message, viewer_url: str, now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an attempt to deliver `message` (signed with this attempt's timestamp)."""
    event = event_with_links(message, viewer_url)
    document: dict[str, Any] = {"text": chat_text(event)} if message.hook.format == "slack" else event
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(message.hook.secret, message.id, timestamp, body),
    }
    return body, headers
