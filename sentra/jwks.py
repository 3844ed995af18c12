"""ProviderKeys: an identity provider's signing keys, read from its JWKS URL (auth.jwks_url) with pyjwt's PyJWKClient.

Verifying a token is synchronous and runs on the event loop for every request, so it only ever looks a key up here;
the network is read in a thread, at these moments alone: at start-up (serve fails if the keys cannot be read), every
REFRESH_PERIOD (so a key the provider retires stops being trusted), and when a token names a key id (`kid`) not in
the set — a provider that rotates its keys publishes the new one before signing with it. That last refresh is shared
by every request that waits for it and made at most once per UNKNOWN_KID_INTERVAL, whatever the key ids sent: a
client sending made-up ids gets its 401 without Sentra fetching anything. A fetch that fails keeps the keys held.

PyJWKClient fetches (http and https only, no redirects), parses and picks the signing keys; its own cache is not used:
its `get_signing_key` fetches when it misses (here that would be on the event loop, inside a request), counts only
successful fetches against its cool-down (a provider that is down would be asked again for every unknown kid), and
once its lifespan is over a failed fetch loses every key it held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable

import jwt
from jwt import PyJWK, PyJWKClient

log = logging.getLogger("sentra")

FETCH_TIMEOUT = 5.0  # seconds: the longest a request whose key is being looked for waits
UNKNOWN_KID_INTERVAL = 30.0  # seconds: at most one fetch this often for tokens naming a key not held
REFRESH_PERIOD = 300.0  # seconds: the key set is read again this often (PyJWKClient's own cache lifespan)
USER_AGENT = "Sentra (JWKS)"  # some providers' front servers refuse urllib's default agent


class KeysUnavailable(Exception):
    """The JWKS URL could not be read, or held no signing key; the message says why."""


class ProviderKeys:
    """The signing keys of one JWKS URL, by key id."""

    def __init__(self, url: str, *, timeout: float = FETCH_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout, headers={"User-Agent": USER_AGENT})
        self._keys: dict[str, PyJWK] = {}
        self._fetching: asyncio.Future[None] | None = None
        self._unknown_kid_fetch_at = float("-inf")  # time.monotonic() of the last fetch for an unknown kid

    def key(self, kid: str) -> PyJWK | None:
        """The key with this id, if the provider published it at the last fetch."""
        return self._keys.get(kid)

    async def fetch(self) -> None:
        """Read the key set now, in a thread (joining a fetch under way); KeysUnavailable if it cannot be read."""
        # Shielded: a caller that stops waiting does not cancel the fetch others wait for.
        await asyncio.shield(self._start_fetch())

    def fetch_for(self, kid: str) -> Awaitable[None] | None:
        """A fetch to wait for before a token signed by `kid` is verified, or None: the key is held, or a fetch for
        an unknown kid was made less than UNKNOWN_KID_INTERVAL ago (the token is then refused as it stands)."""
        if kid in self._keys:
            return None
        if self._fetching is None:
            now = time.monotonic()
            if now - self._unknown_kid_fetch_at < UNKNOWN_KID_INTERVAL:
                return None
            self._unknown_kid_fetch_at = now
        # Started now, not when awaited: a request for another unknown kid arriving meanwhile joins this fetch.
        return self._wait_for(self._start_fetch())

    async def keep_fresh(self) -> None:
        """Read the key set every REFRESH_PERIOD, for as long as the server runs (until this task is cancelled)."""
        try:
            while True:
                await asyncio.sleep(REFRESH_PERIOD)
                await self._wait_for(self._start_fetch())
        finally:
            if self._fetching is not None:
                self._fetching.cancel()  # the server is stopping: nobody is left to wait for the keys

    @staticmethod
    async def _wait_for(fetching: asyncio.Future[None]) -> None:
        """Wait for a fetch that may fail (logged once, by _fetched)."""
        try:
            await asyncio.shield(fetching)
        except KeysUnavailable:
            pass

    def _start_fetch(self) -> asyncio.Future[None]:
        if self._fetching is None:
            fetching = self._fetching = asyncio.ensure_future(self._fetch())
            fetching.add_done_callback(self._fetched)
        return self._fetching

    def _fetched(self, fetching: asyncio.Future[None]) -> None:
        self._fetching = None
        if fetching.cancelled():
            return
        exc = fetching.exception()  # retrieved here, whether or not anyone still waits for it
        if exc is not None and self._keys:
            log.warning("%s; the %d keys read before are kept", exc, len(self._keys))

    async def _fetch(self) -> None:
        fetching = asyncio.to_thread(self._client.get_signing_keys, True)
        try:
            # PyJWKClient's timeout bounds each read of the socket; this bounds the whole answer.
            keys = await asyncio.wait_for(fetching, self.timeout + 1)
        except TimeoutError:
            raise KeysUnavailable(f"cannot read {self.url}: no answer within {self.timeout:.0f} s") from None
        except (jwt.PyJWTError, ValueError, OSError) as exc:
            raise KeysUnavailable(f"cannot read the signing keys at {self.url}: {exc}") from None
        self._keys = {key.key_id: key for key in keys if key.key_id}
        log.info("read %d signing keys from %s", len(self._keys), self.url)
