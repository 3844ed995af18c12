"""Tokens from an identity provider's rotating keys (auth.jwks_url): keys the test generates, published by a JWKS
endpoint the test serves on loopback (counting how often Sentra reads it), and a real Sentra server verifying them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from conftest import RunningServer, ServerFactory, error_of, make_token, messages
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import sentra.jwks
from sentra.config import ConfigError, load_config
from sentra.serve import StartupError


@dataclass(frozen=True)
class SigningKey:
    """One of the provider's key pairs: what it signs with, and the public half it publishes."""

    kid: str
    private: Any
    algorithm: str

    def jwk(self) -> dict[str, Any]:
        """The public key as the provider publishes it in its JWKS."""
        kind = jwt.algorithms.RSAAlgorithm if self.algorithm == "RS256" else jwt.algorithms.ECAlgorithm
        published = kind.to_jwk(self.private.public_key(), as_dict=True)
        return {**published, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def sign(self, sub: str = "carol", **claims: Any) -> str:
        """A fresh token (its own jti, so Sentra verifies it anew) signed by this key, naming it by kid."""
        now = int(time.time())
        payload = {"sub": sub, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, "aud": "sentra", **claims}
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


@pytest.fixture(scope="module")
def rsa_keys() -> list[SigningKey]:
    """Two RSA keys: the one in use, and the one the provider rotates to."""
    return [SigningKey(f"rsa-{n}", rsa.generate_private_key(65537, 2048), "RS256") for n in (1, 2)]


class JwksHandler(BaseHTTPRequestHandler):
    """Serves the provider's current key set; counts every request, even those it fails."""

    server: JwksServer

    def do_GET(self) -> None:
        provider = self.server.provider
        with provider.lock:
            provider.hits += 1
            down, delay, body = provider.down, provider.delay, json.dumps({"keys": provider.published}).encode()
        if delay:
            time.sleep(delay)
        if down:
            self.send_error(503, "down for maintenance")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test counts requests instead."""


class JwksServer(ThreadingHTTPServer):
    """The HTTP server of an IdentityProvider."""

    daemon_threads = True

    def __init__(self, provider: IdentityProvider) -> None:
        super().__init__(("127.0.0.1", 0), JwksHandler)
        self.provider = provider


class IdentityProvider:
    """A JWKS endpoint on loopback whose key set, availability and speed the test changes as it goes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published: list[dict[str, Any]] = []
        self.hits = 0
        self.down = False
        self.delay = 0.0
        self.server = JwksServer(self)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where the key set is published."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def publish(self, *keys: SigningKey) -> None:
        """Publish exactly these keys from now on."""
        with self.lock:
            self.published = [key.jwk() for key in keys]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    """An identity provider's JWKS endpoint, publishing nothing until the test says."""
    idp = IdentityProvider()
    yield idp
    idp.close()


async def start_verifying(start_server: ServerFactory, provider: IdentityProvider, **settings: Any) -> RunningServer:
    """A Sentra server taking RS256 tokens for audience 'sentra' signed by the provider's keys."""
    chosen = {"auth.algorithm": "RS256", "auth.jwks_url": provider.url, "auth.audience": "sentra", **settings}
    return await start_server(**chosen)


async def call(server: RunningServer, token: str, method: str = "GET", path: str = "/api/agents", **kw: Any) -> Any:
    """One request with `token` as its bearer."""
    async with httpx.AsyncClient(base_url=server.url, timeout=15.0) as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


async def test_tokens_signed_by_a_published_key_write_and_read(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey]
) -> None:
    key = rsa_keys[0]
    provider.publish(key)
    server = await start_verifying(start_server, provider)
    assert provider.hits == 1  # read once, at start-up
    written = await call(server, key.sign(), "POST", "/api/agents/idp-run/logs", json=["signed by the provider"])
    assert written.status_code == 200, written.text
    read = await call(server, key.sign(), "GET", "/api/agents/idp-run/logs")
    assert messages(read.json()["lines"]) == ["signed by the provider"]
    assert (await call(server, key.sign(), "GET", "/api/agents/idp-run")).json()["owner"] == "carol"

    wrong_audience = await call(server, key.sign(aud="another-service"))
    assert wrong_audience.status_code == 401 and "audience" in error_of(wrong_audience)["message"].lower()
    impostor = SigningKey(key.kid, rsa.generate_private_key(65537, 2048), "RS256")  # claims the published kid
    forged = await call(server, impostor.sign())
    assert forged.status_code == 401 and "signature" in error_of(forged)["message"]
    no_kid = jwt.encode({"sub": "carol", "aud": "sentra"}, key.private, algorithm="RS256")
    refused = await call(server, no_kid)
    assert refused.status_code == 401 and "'kid'" in error_of(refused)["message"]
    assert (await call(server, make_token("carol", aud="sentra"))).status_code == 401  # HS256: not the provider's
    assert provider.hits == 1


async def test_es256_keys_are_read_from_the_key_set(start_server: ServerFactory, provider: IdentityProvider) -> None:
    key = SigningKey("ec-1", ec.generate_private_key(ec.SECP256R1()), "ES256")
    provider.publish(key)
    server = await start_verifying(start_server, provider, **{"auth.algorithm": "ES256"})
    assert (await call(server, key.sign())).status_code == 200


async def test_a_rotated_key_is_read_once_and_its_tokens_accepted(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey]
) -> None:
    old, new = rsa_keys
    provider.publish(old)
    server = await start_verifying(start_server, provider)
    assert (await call(server, old.sign())).status_code == 200
    provider.publish(new)  # the provider rotates: the new key instead of the old one
    answers = await asyncio.gather(*(call(server, new.sign()) for _ in range(5)))
    assert [answer.status_code for answer in answers] == [200] * 5
    assert provider.hits == 2  # the five requests waited for one read of the key set
    retired = await call(server, old.sign())
    assert retired.status_code == 401
    assert error_of(retired) == {
        "code": "invalid_token",
        "message": "the token is signed by a key the identity provider does not publish (kid 'rsa-1')",
    }
    assert retired.headers["www-authenticate"] == 'Bearer realm="sentra", error="invalid_token"'


async def test_signing_in_with_a_token_of_a_new_key(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey]
) -> None:
    old, new = rsa_keys
    provider.publish(old)
    server = await start_verifying(start_server, provider)
    provider.publish(old, new)
    async with httpx.AsyncClient(base_url=server.url, timeout=15.0) as client:
        signed_in = await client.post("/api/session", json={"token": new.sign(sub="dora")})
    assert signed_in.status_code == 200 and signed_in.json()["subject"] == "dora"
    assert provider.hits == 2


async def test_made_up_key_ids_are_refused_without_reading_the_keys_for_each(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey]
) -> None:
    key = rsa_keys[0]
    provider.publish(key)
    server = await start_verifying(start_server, provider)
    made_up = [SigningKey(uuid.uuid4().hex, key.private, "RS256") for _ in range(40)]
    async with httpx.AsyncClient(base_url=server.url, timeout=15.0) as client:

        async def with_made_up_kid(fake: SigningKey) -> httpx.Response:
            return await client.get("/api/agents", headers={"Authorization": f"Bearer {fake.sign()}"})

        answers = [await with_made_up_kid(fake) for fake in made_up[:20]]
        answers += await asyncio.gather(*(with_made_up_kid(fake) for fake in made_up[20:]))
    assert {answer.status_code for answer in answers} == {401}
    assert {error_of(answer)["code"] for answer in answers} == {"invalid_token"}
    assert made_up[-1].kid in error_of(answers[-1])["message"]
    assert provider.hits == 2  # start-up, and one read for the first unknown kid: not one per request
    assert (await call(server, key.sign())).status_code == 200


async def test_provider_down_at_a_refresh_refuses_unknown_keys_and_keeps_known_ones(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey]
) -> None:
    known, unknown = rsa_keys
    provider.publish(known)
    server = await start_verifying(start_server, provider)
    provider.down = True
    provider.publish(known, unknown)  # published, but not served while the provider is down
    refused = await call(server, unknown.sign())
    assert refused.status_code == 401 and "does not publish" in error_of(refused)["message"]
    assert provider.hits == 2  # the read was tried, and failed
    assert (await call(server, known.sign())).status_code == 200  # a token Sentra has not seen before


@pytest.mark.slow
async def test_a_slow_provider_holds_only_the_request_waiting_for_its_keys(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey]
) -> None:
    old, new = rsa_keys
    provider.publish(old)
    server = await start_verifying(start_server, provider)
    provider.publish(old, new)
    provider.delay = 1.5
    started = time.monotonic()
    waiting = asyncio.ensure_future(call(server, new.sign()))
    await asyncio.sleep(0.2)  # the read of the keys is under way
    others = await asyncio.gather(call(server, old.sign()), call(server, old.sign(), path="/healthz"))
    others_took = time.monotonic() - started
    assert [answer.status_code for answer in others] == [200, 200]
    assert others_took < 1.0  # answered while the provider was still slow
    assert (await waiting).status_code == 200
    assert time.monotonic() - started >= 1.5
    assert provider.hits == 2


@pytest.mark.slow
async def test_unknown_key_ids_read_the_keys_again_after_the_interval(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sentra.jwks, "UNKNOWN_KID_INTERVAL", 0.5)
    old, new = rsa_keys
    provider.publish(old)
    server = await start_verifying(start_server, provider)
    stranger = SigningKey("nobody", old.private, "RS256")
    assert (await call(server, stranger.sign())).status_code == 401
    assert (await call(server, stranger.sign())).status_code == 401
    assert provider.hits == 2
    provider.publish(old, new)
    assert (await call(server, new.sign())).status_code == 401  # still within the interval
    await asyncio.sleep(0.6)
    assert (await call(server, new.sign())).status_code == 200
    assert provider.hits == 3


@pytest.mark.slow
async def test_a_key_the_provider_retires_stops_being_trusted_at_the_next_periodic_read(
    start_server: ServerFactory, provider: IdentityProvider, rsa_keys: list[SigningKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sentra.jwks, "REFRESH_PERIOD", 0.3)
    old, new = rsa_keys
    provider.publish(old)
    server = await start_verifying(start_server, provider)
    assert (await call(server, old.sign())).status_code == 200
    provider.publish(new)
    deadline = time.monotonic() + 5
    while provider.hits < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)
    assert (await call(server, old.sign())).status_code == 401
    assert (await call(server, new.sign())).status_code == 200
    assert provider.hits <= 4  # the periodic reads only: neither token asked for one


async def test_start_up_fails_clearly_when_the_keys_cannot_be_read(
    start_server: ServerFactory, provider: IdentityProvider
) -> None:
    provider.down = True
    with pytest.raises(StartupError) as caught:
        await start_verifying(start_server, provider)
    message = str(caught.value)
    assert message.startswith("auth.jwks_url: cannot read the signing keys at " + provider.url)
    assert "503" in message and "\n" not in message
    provider.down = False  # up, but publishing no key
    with pytest.raises(StartupError, match="did not contain any keys"):
        await start_verifying(start_server, provider)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth.algorithm": "RS256"}, "auth.algorithm RS256 needs the identity provider's keys: set auth.jwks_url"),
        (
            {"auth.algorithm": "ES256", "auth.jwks_url": "https://idp.example/jwks", "auth.public_key_file": "k.pem"},
            "set auth.jwks_url or auth.public_key_file, not both",
        ),
        ({"auth.jwks_url": "https://idp.example/jwks"}, "set auth.algorithm to the one its keys use, RS256 or ES256"),
        (
            {"auth.algorithm": "RS256", "auth.jwks_url": "file:///etc/jwks.json"},
            "auth.jwks_url must be an https:// (or http://) URL, not 'file:///etc/jwks.json'",
        ),
    ],
)
def test_provider_key_settings_are_checked_before_start(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, settings)
    assert message in str(caught.value)
