"""Opening storage from the configuration: the factory that picks a backend from `storage.url`, and revoking a
token without a running server. The backends are imported here lazily, so they import only the interface below them
(storage/base.py) and PostgreSQL's driver loads only when a setting asks for it."""

from __future__ import annotations

from sentra.config import Config, missing_extra
from sentra.storage.base import Storage


def storage_from_config(config: Config) -> Storage:
    """The storage backend storage.url names (not yet opened)."""
    if config.shared_storage:
        try:
            from sentra.storage.postgres import PostgresStore
        except ImportError as exc:
            raise missing_extra("storage.url", exc) from None

        return PostgresStore(
            config["storage.url"],
            commit_max_lines=config["storage.commit_max_lines"],
            search_index=config["search.index"],
        )
    from sentra.storage.sqlite import Store

    return Store(
        config.db_path,
        synchronous=config["storage.synchronous"],
        commit_max_lines=config["storage.commit_max_lines"],
        search_index=config["search.index"],
    )


async def revoke_token(config: Config, jti: str) -> None:
    """Record a revocation in the configured storage, without a running server (`sentra token revoke`);
    every server picks it up within a second."""
    if config.shared_storage:
        try:
            from sentra.storage.postgres import revoke_token_pg
        except ImportError as exc:
            raise missing_extra("storage.url", exc) from None

        await revoke_token_pg(config["storage.url"], jti)
        return
    from sentra.storage.sqlite import revoke_token_offline

    revoke_token_offline(config.db_path, jti)
