"""The bus that carries every commit to the topic registries: memory:// in one process, Redis across several."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sentra.config import Config, missing_extra
from sentra.lines import Line
from sentra.models import Agent, CommitListener
from sentra.registry import TopicRegistry
from sentra.storage.base import Storage


class Bus(CommitListener, Protocol):
    """The storage's commit listener: hands each commit to this process's registry and to every other's."""

    async def start(self) -> None:
        """Connect and start receiving other processes' commits."""

    async def close(self) -> None:
        """Stop receiving and disconnect; what this process published has been sent."""


class LocalBus:
    """memory://: one process, so a commit goes straight to its own registry."""

    def __init__(self, registry: TopicRegistry) -> None:
        self.registry = registry

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to disconnect."""

    def lines_committed(self, agent: Agent, lines: Sequence[Line]) -> None:
        """Deliver to this process's subscribers."""
        self.registry.lines_committed(agent, lines)

    def agent_changed(self, agent: Agent) -> None:
        """Tell this process's subscribers."""
        self.registry.agent_changed(agent)

    def agent_deleted(self, agent: Agent) -> None:
        """Tell this process's subscribers."""
        self.registry.agent_deleted(agent)


def bus_from_config(config: Config, registry: TopicRegistry, storage: Storage) -> Bus:
    """The bus bus.url names (not yet started)."""
    if config["bus.url"] == "memory://":
        return LocalBus(registry)
    try:
        from sentra.bus.redis_bus import RedisBus
    except ImportError as exc:
        raise missing_extra("bus.url", exc) from None

    return RedisBus(config["bus.url"], registry, storage, prefix=config["bus.prefix"])
