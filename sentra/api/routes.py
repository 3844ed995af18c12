"""ROUTES: every path Sentra serves and the handlers that answer it, declared once.

Routing, each path's Allow list, its OPTIONS answer, HEAD wherever GET is and its 405s follow from this table, and
tests/test_openapi.py checks the OpenAPI document against it. The first route that matches a path answers it.
"""

from __future__ import annotations

from sentra.api.agent_events import AgentEventsHandler
from sentra.api.agents import AgentHandler, AgentsHandler
from sentra.api.attachments import AttachmentHandler, AttachmentUploadHandler
from sentra.api.ingest import IngestHandler
from sentra.api.logs import LogsHandler
from sentra.api.mcp import McpHandler
from sentra.api.multi_stream import MultiStreamHandler
from sentra.api.otlp import OtlpLogsHandler
from sentra.api.runcontrol import RevokeShareHandler, ShareHandler, SharesHandler, StopHandler
from sentra.api.search import SearchHandler
from sentra.api.session import SessionHandler
from sentra.api.static import StaticHandler
from sentra.api.streams import LogStreamHandler, Seed001StreamHandler
from sentra.api.system import HealthHandler, MetricsHandler, OpenAPIHandler
from sentra.api.tickets import StreamTicketsHandler
from sentra.api.volume import VolumeHandler
from sentra.api.webhooks import (
    WebhookDeliveriesHandler,
    WebhookHandler,
    WebhooksHandler,
    WebhookTestHandler,
)
from sentra.http.routing import Route

ROUTES = (
    Route("/healthz", HealthHandler),
    Route("/metrics", MetricsHandler),
    Route("/api/openapi.json", OpenAPIHandler),
    Route("/api/agents", AgentsHandler),
    Route("/api/agents/{agent_id}", AgentHandler),
    Route("/api/agents/{agent_id}/logs", LogsHandler, IngestHandler),
    Route("/api/agents/{agent_id}/logs/stream", LogStreamHandler),
    Route("/api/agents/{agent_id}/attachments", AttachmentUploadHandler),
    Route("/api/agents/{agent_id}/attachments/{attachment_id}", AttachmentHandler),
    Route("/api/agents/{agent_id}/stop", StopHandler),
    Route("/api/agents/{agent_id}/share", ShareHandler),
    Route("/api/agents/{agent_id}/shares", SharesHandler),
    Route("/api/agents/{agent_id}/share/{share_id}", RevokeShareHandler),
    Route("/api/agents/{agent_id}/volume", VolumeHandler),
    Route("/api/v1/stream-logs/request/{agent_id}", Seed001StreamHandler),
    Route("/api/streams", MultiStreamHandler),
    Route("/api/search", SearchHandler),
    Route("/api/agent-events", AgentEventsHandler),
    Route("/api/stream-tickets", StreamTicketsHandler),
    Route("/api/session", SessionHandler),
    Route("/api/webhooks", WebhooksHandler),
    Route("/api/webhooks/{hook_id}", WebhookHandler),
    Route("/api/webhooks/{hook_id}/test", WebhookTestHandler),
    Route("/api/webhooks/{hook_id}/deliveries", WebhookDeliveriesHandler),
    Route("/v1/logs", OtlpLogsHandler),  # OTLP/HTTP's path for logs, where OpenTelemetry SDKs send them
    Route("/mcp", McpHandler),
    Route("/api/{rest:path}"),  # any other /api/ path: a JSON 404, whatever the method
    Route("/{url:path}", StaticHandler),  # the viewer's files
)
