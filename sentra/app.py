"""make_app: Sentra's application, the route table served with one set of collaborators."""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path

from sentra.api.routes import ROUTES
from sentra.auth import TokenService
from sentra.config import Config
from sentra.http.routing import Router
from sentra.metrics import Metrics
from sentra.ratelimit.local import RateLimiter
from sentra.ratelimit.open import rate_limiter_from_config
from sentra.registry import TopicRegistry
from sentra.services import Services
from sentra.storage.base import Storage


def viewer_files() -> Traversable:
    """The viewer's files: sentra/static inside a wheel or sentra.pyz, else the top-level static/ of a checkout."""
    packaged = importlib.resources.files("sentra") / "static"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "static"


def make_app(
    config: Config,
    store: Storage,
    registry: TopicRegistry,
    tokens: TokenService | None,
    *,
    static_files: Traversable | None = None,
    limiter: RateLimiter | None = None,
) -> Router:
    """The Sentra application, served by sentra.http.protocol.HTTP1Server; tests build as many as they like."""
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
    return Router(ROUTES, services)
