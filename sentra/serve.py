"""serve(config): the one owner of the lifecycle — open, listen, maintain, then drain and close on a signal."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import tornado.netutil

from sentra.app import make_app
from sentra.auth import TokenService, local_user
from sentra.bus.local import bus_from_config
from sentra.config import Config, ConfigError, missing_extra
from sentra.http.protocol import HTTP1Server
from sentra.jwks import KeysUnavailable
from sentra.memory import MemoryReturn
from sentra.ratelimit.open import rate_limiter_from_config
from sentra.registry import TopicRegistry
from sentra.storage.base import Storage
from sentra.storage.open import storage_from_config
from sentra.webhooks.worker import DeliveryWorker

if TYPE_CHECKING:
    from sentra.bridge import RedisBridge

log = logging.getLogger("sentra")
SHUTDOWN_GRACE = 10.0
REVOCATION_POLL = 1.0


class StartupError(RuntimeError):
    """The server cannot start; the message is one line for the operator."""


# The collector's first threshold is Python's 700 allocations scaled for a server whose heap holds every open
# stream: with the default, opening 10,000 streams spent most of its time in collections of the older
# generations (5.1 s of full collections in one benchmark run; 10,000 opens took 4.6 s, 2.1 s with this).
GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc() -> None:
    """Collect less often, and never scan the objects start-up made (modules, routes, settings): process-wide,
    so only the server's own process calls it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def is_loopback(host: str) -> bool:
    """True if `host` only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _watch_revocations(store: Storage, tokens: TokenService, registry: TopicRegistry) -> None:
    last = 0
    while True:
        for rowid, jti in await store.revoked_since(last):
            last = rowid
            if jti not in tokens.revoked:
                tokens.revoked.add(jti)
                registry.cut_token(jti)
        await asyncio.sleep(REVOCATION_POLL)


async def _maintain(store: Storage, config: Config) -> None:
    timeout = config["agents.timeout"]
    period = config["retention.interval"]
    if timeout > 0:
        period = min(period, max(0.5, timeout / 4))
    while True:
        await asyncio.sleep(period)
        try:
            if timeout > 0:
                for agent_id in await store.fail_idle_agents(timeout):
                    log.info("agent %s failed: no line for %.0f s", agent_id, timeout)
            await store.enforce_retention(
                config["retention.max_lines_per_agent"],
                config["retention.max_age"],
                config["retention.idempotency_ttl"],
            )
        except Exception:
            log.exception("maintenance failed; will retry")


async def _open_store(store: Storage) -> Storage:
    try:
        await store.open()
    except sqlite3.Error as exc:
        await store.close()
        raise StartupError(f"cannot open the database {store.description}: {exc}") from None
    except OSError as exc:
        raise StartupError(f"cannot open the database {store.description}: {exc.strerror or exc}") from None
    return store


def _bridge_from_config(config: Config, store: Storage) -> RedisBridge | None:
    """The Redis bridge bridge.redis_url asks for (not yet started), or None."""
    if not config["bridge.redis_url"]:
        return None
    try:
        from sentra.bridge import RedisBridge
    except ImportError as exc:
        raise missing_extra("bridge.redis_url", exc) from None
    return RedisBridge(config, store)


def public_url(config: Config, port: int) -> str:
    """Where people reach the server, ending in a slash: server.public_url, else http://host:port/."""
    host = config["server.host"]
    shown = f"[{host}]" if ":" in host else host
    url = config["server.public_url"] or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}"
    return str(url).rstrip("/") + "/"


def _banner(config: Config, port: int, tokens: TokenService | None, store: Storage, out: TextIO) -> None:
    host = config["server.host"]
    url = public_url(config, port)
    print(f"Sentra listening on {url} (database {store.description})", file=out, flush=True)
    if tokens is None:
        print("Auth is off (auth.mode = none): every agent is owned by 'local'.", file=out, flush=True)
    elif tokens.can_sign and is_loopback(host):
        # Like Jupyter's login URL: a local user gets going without a separate step.
        token = tokens.create(local_user(config), ttl=30 * 86400)
        print(f"Open {url}?token={token}", file=out, flush=True)
        print(f"or export SENTRA_URL={url.rstrip('/')} SENTRA_TOKEN={token}", file=out, flush=True)


def loop_factory(config: Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the event loop `server.event_loop` names (None: asyncio's own)."""
    choice = config["server.event_loop"]
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "auto":
            return None  # e.g. in sentra.pyz, which carries no compiled code, or on Windows
        raise StartupError("server.event_loop = 'uvloop' needs the uvloop package: pip install uvloop") from None
    return uvloop.new_event_loop


async def serve(
    config: Config,
    *,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    own_gc: bool = False,
) -> None:
    """Run the server until SIGINT/SIGTERM (or `stop`), then shut down without losing a line; `own_gc` when the
    process's collector is the server's alone (tune_gc ran), so opened connections may be frozen in bulk."""
    host = config["server.host"]
    if not config.auth_enabled and not is_loopback(host):
        raise ConfigError(f"auth.mode = none is refused on {host}: bind to 127.0.0.1 or turn auth on")
    try:
        tokens = TokenService(config) if config.auth_enabled else None
    except OSError as exc:
        raise StartupError(f"cannot read the auth key: {exc}") from None
    if tokens is not None and tokens.jwks is not None:
        # Without the identity provider's keys no token could be verified: a wrong URL is told at once.
        try:
            await tokens.jwks.fetch()
        except KeysUnavailable as exc:
            raise StartupError(f"auth.jwks_url: {exc}") from None
    # Everything is built (a missing engine or package is a ConfigError) before anything is opened.
    store = storage_from_config(config)
    registry = TopicRegistry()
    bus = bus_from_config(config, registry, store)
    limiter = rate_limiter_from_config(config)
    bridge = _bridge_from_config(config, store)
    await _open_store(store)
    try:
        await bus.start()
    except OSError as exc:
        await store.close()
        raise StartupError(f"cannot connect to the bus {config['bus.url']}: {exc.strerror or exc}") from None
    store.listener = bus
    app = make_app(config, store, registry, tokens, limiter=limiter)
    memory = MemoryReturn(config["server.return_memory_after"], freeze=own_gc)
    # Bounded waits for headers and bodies: a client that trickles them in (slowloris) is cut, not kept forever.
    server = HTTP1Server(
        app,
        max_body_size=config["limits.max_body_size"],
        header_timeout=config["server.header_timeout"],
        body_timeout=config["server.body_timeout"],
        on_open=memory.connection_opened,
        on_close=memory.connection_closed,
    )
    try:
        sockets = tornado.netutil.bind_sockets(config["server.port"], host, family=socket.AF_UNSPEC)
    except OSError as exc:
        await bus.close()
        await store.close()
        raise StartupError(f"cannot listen on {host}:{config['server.port']}: {exc.strerror or exc}") from None
    await server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    background = [asyncio.create_task(_maintain(store, config))]
    if tokens is not None:
        background.append(asyncio.create_task(_watch_revocations(store, tokens, registry)))
        if tokens.jwks is not None:
            background.append(asyncio.create_task(tokens.jwks.keep_fresh()))
    if bridge is not None:
        await bridge.start()
    # Webhooks: the outbox's worker, a task of its own beside the requests (nothing it waits for holds them up).
    webhooks = DeliveryWorker(store, config, public_url(config, port), app.services.metrics)
    await webhooks.start()
    log.info("event loop: %s", type(loop).__module__.partition(".")[0])
    _banner(config, port, tokens, store, out)
    if on_ready is not None:
        on_ready(port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: no new connections, ending streams, flushing writes")
        server.stop()
        server.on_open = server.on_close = None
        memory.cancel()
        if bridge is not None:
            await bridge.close()
        registry.cut_all("shutdown")
        await store.drain(SHUTDOWN_GRACE)
        deadline = loop.time() + SHUTDOWN_GRACE
        while registry.open_streams and loop.time() < deadline:
            await asyncio.sleep(0.01)
        # Let the answers of the last commits and the streams' last chunks reach their sockets (none to wait for
        # when no connection is open: a server stopped idle stops at once).
        if server.connections:
            await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("some connections did not close within %.0f s", SHUTDOWN_GRACE)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await webhooks.close()
        await store.close()
        await bus.close()
        if limiter is not None:
            await limiter.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("stopped")
