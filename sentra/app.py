"""make_app: the Tornado application, its routes and settings, built from explicit collaborators."""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tornado.web

from sentra.api.agents import AgentHandler, AgentsHandler
from sentra.api.base import NotFoundHandler
from sentra.api.direct import SentraApplication
from sentra.api.logs import LogsHandler
from sentra.api.routes import ROUTES
from sentra.api.session import SessionHandler
from sentra.api.static import StaticHandler
from sentra.api.streams import StreamPathHandler
from sentra.api.system import HealthHandler, MetricsHandler, OpenAPIHandler
from sentra.api.tickets import StreamTicketsHandler
from sentra.auth import TokenService
from sentra.config import Config
from sentra.http.access_log import log_access
from sentra.http.routing import Router
from sentra.metrics import Metrics
from sentra.ratelimit.local import RateLimiter
from sentra.ratelimit.open import rate_limiter_from_config
from sentra.registry import TopicRegistry
from sentra.services import Services
from sentra.storage.base import Storage

AGENT = r"(?P<agent_id>[^/]+)"


def viewer_files() -> Traversable:
    """The viewer's files: sentra/static inside a wheel or sentra.pyz, else the top-level static/ of a checkout."""
    packaged = importlib.resources.files("sentra") / "static"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "static"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One access-log line per request, with tokens masked."""
    request = handler.request
    log_access(handler.get_status(), request.method or "", request.uri or "", request.remote_ip, request.request_time())


def make_app(
    config: Config,
    store: Storage,
    registry: TopicRegistry,
    tokens: TokenService | None,
    *,
    static_files: Traversable | None = None,
    limiter: RateLimiter | None = None,
) -> SentraApplication:
    """The Sentra application; tests build as many independent ones as they like."""
    metrics = Metrics(registry)
    store.on_commit = metrics.observe_commit
    services = Services(
        config=config,
        store=store,
        registry=registry,
        tokens=tokens,
        metrics=metrics,
        rate=limiter if limiter is not None else rate_limiter_from_config(config),
        viewer=viewer_files() if static_files is None else static_files,
    )
    routes: list[Any] = [
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
        (r"/api/openapi\.json", OpenAPIHandler),
        (r"/api/agents", AgentsHandler),
        (rf"/api/agents/{AGENT}", AgentHandler),
        (rf"/api/agents/{AGENT}/logs", LogsHandler),
        (rf"/api/agents/{AGENT}/logs/stream", StreamPathHandler),
        (rf"/api/v1/stream-logs/request/{AGENT}", StreamPathHandler),
        (r"/api/streams", StreamPathHandler),
        (r"/api/stream-tickets", StreamTicketsHandler),
        (r"/api/session", SessionHandler),
        (r"/api/agent-events", StreamPathHandler),
        (r"/api/.*", NotFoundHandler),
        (r"/(.*)", StaticHandler, {"root": services.viewer}),
    ]
    return SentraApplication(
        Router(ROUTES, services),
        routes,
        sentra_services=services,
        log_function=log_request if config["server.access_log"] else (lambda handler: None),
        default_handler_class=NotFoundHandler,
        compress_response=False,
    )
