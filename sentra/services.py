"""Services: the collaborators of one Sentra app, built by make_app and handed to every request's handler."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources.abc import Traversable

from sentra.auth import TokenService
from sentra.config import Config
from sentra.metrics import Metrics
from sentra.ratelimit.local import RateLimiter
from sentra.registry import TopicRegistry
from sentra.storage.base import Storage


@dataclass(frozen=True, slots=True)
class Services:
    """What a handler reaches beyond its request: settings, storage, open streams, tokens, counters, limits and the
    viewer's files. One per app, so tests build as many independent apps as they like."""

    config: Config
    store: Storage
    registry: TopicRegistry
    tokens: TokenService | None  # None when auth.mode is "none"
    metrics: Metrics
    rate: RateLimiter | None  # None when ingest is not rate limited
    viewer: Traversable  # the viewer's files (a folder, or a folder inside sentra.pyz)
