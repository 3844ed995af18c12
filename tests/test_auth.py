"""Auth over HTTP: every 401/403/404, the order of checks, scopes, admin, token transports, RS256,
revocation, stream tickets and auth.mode none. Tokens are made with pyjwt, independently of Sentra."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import SECRET, RunningServer, ServerFactory, error_of, make_token, open_stream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sentra.config import ConfigError
from sentra.serve import StartupError

REPO = Path(__file__).resolve().parent.parent


def b64url(value: dict[str, Any]) -> str:
    """One JWT segment: base64url of the JSON, unpadded."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    """An `alg: none` token: a header and payload with an empty signature."""
    return f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(payload)}."


async def status_of(
    server: RunningServer, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    """One request with exactly the given headers (a stream is closed once its status is known)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        request = client.build_request(method, path, headers=headers, **kwargs)
        response = await client.send(request, stream=True)
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()
        finally:
            await response.aclose()
        return response


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def alices_agent(alice: httpx.AsyncClient) -> str:
    """Agent `owned` of alice with two lines."""
    response = await alice.post("/api/agents/owned/logs", json=["one", "two"])
    assert response.status_code == 200
    return "owned"


# Every route that needs a caller, as (method, path, body).
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/agents", None),
    ("POST", "/api/agents", {"id": "new"}),
    ("GET", "/api/agents/owned", None),
    ("PATCH", "/api/agents/owned", {"name": "x"}),
    ("DELETE", "/api/agents/owned", None),
    ("GET", "/api/agents/owned/logs", None),
    ("POST", "/api/agents/owned/logs", {"message": "x"}),
    ("GET", "/api/agents/owned/logs/stream", None),
    ("GET", "/api/v1/stream-logs/request/owned", None),
    ("GET", "/api/streams?agent=owned", None),
    ("POST", "/api/stream-tickets", {"agent": "owned"}),
]

AGENT_ROUTES = [route for route in ROUTES if "owned" in route[1] and route[1] != "/api/stream-tickets"]


# ---- 401 -----------------------------------------------------------------------------------------


def bad_credentials() -> list[tuple[str, dict[str, str], str]]:
    """(name, headers, expected error code) for every way of not being authenticated."""
    now = int(time.time())
    return [
        ("missing", {}, "not_authenticated"),
        ("basic-scheme", {"Authorization": "Basic YWxpY2U6cHc="}, "invalid_token"),
        ("bearer-without-token", {"Authorization": "Bearer"}, "invalid_token"),
        ("garbage", bearer("not-a-jwt"), "invalid_token"),
        ("garbage-three-parts", bearer("abc.def.ghi"), "invalid_token"),
        ("expired", bearer(make_token("alice", exp=now - 60)), "token_expired"),
        (
            "other-secret",
            bearer(make_token("alice", secret="another-secret-of-sufficient-length-123456")),
            "invalid_token",
        ),
        ("not-yet-valid", bearer(make_token("alice", nbf=now + 600)), "invalid_token"),
        ("alg-none", bearer(unsigned({"sub": "alice", "iat": now})), "invalid_token"),
        ("no-subject", bearer(jwt.encode({"iat": now, "scope": "admin"}, SECRET, algorithm="HS256")), "invalid_token"),
        ("empty-subject", bearer(make_token("")), "invalid_token"),
        ("non-string-subject", bearer(jwt.encode({"sub": 42}, SECRET, algorithm="HS256")), "invalid_token"),
        ("hs512-not-allowed", bearer(jwt.encode({"sub": "alice"}, SECRET * 2, algorithm="HS512")), "invalid_token"),
    ]


@pytest.mark.parametrize(("headers", "code"), [c[1:] for c in bad_credentials()], ids=[c[0] for c in bad_credentials()])
async def test_bad_credentials_are_401_with_www_authenticate(
    server: RunningServer, alices_agent: str, headers: dict[str, str], code: str
) -> None:
    response = await status_of(server, "GET", f"/api/agents/{alices_agent}/logs", headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="sentra"')
    error = error_of(response)
    assert error["code"] == code
    assert error["message"]


async def test_challenge_without_credentials_has_no_error_code(server: RunningServer) -> None:
    response = await status_of(server, "GET", "/api/agents", {})
    assert response.headers["www-authenticate"] == 'Bearer realm="sentra"'


async def test_challenge_for_a_bad_token_says_invalid_token(server: RunningServer) -> None:
    response = await status_of(server, "GET", "/api/agents", bearer("abc.def.ghi"))
    assert response.headers["www-authenticate"] == 'Bearer realm="sentra", error="invalid_token"'


async def test_expired_and_tampered_tokens_say_why(server: RunningServer) -> None:
    expired = await status_of(server, "GET", "/api/agents", bearer(make_token("alice", exp=int(time.time()) - 60)))
    assert "expired" in error_of(expired)["message"]
    header, _payload, signature = make_token("alice").split(".")
    forged = b64url({"sub": "root", "scope": "admin"})
    tampered = await status_of(server, "GET", "/api/agents", bearer(f"{header}.{forged}.{signature}"))
    assert tampered.status_code == 401
    assert "signature" in error_of(tampered)["message"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_route_needs_credentials(
    server: RunningServer, alices_agent: str, method: str, path: str, body: Any
) -> None:
    response = await status_of(server, method, path, {}, json=body)
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    assert error_of(response)["code"] == "not_authenticated"
    assert "Authorization: Bearer" in error_of(response)["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/agents/ghost",
        "/api/agents/ghost/logs",
        "/api/agents/ghost/logs/stream",
        "/api/agents/bad%20id",
        "/api/agents/bad%20id/logs",
        "/api/agents/bad%20id/logs/stream",
        "/api/v1/stream-logs/request/bad%20id",
    ],
)
async def test_unauthenticated_request_for_unknown_or_bad_agent_is_401_not_404(
    server: RunningServer, path: str
) -> None:
    response = await status_of(server, "GET", path, {})
    assert response.status_code == 401


async def test_unauthenticated_ingest_with_bad_agent_id_is_401(server: RunningServer) -> None:
    response = await status_of(server, "POST", "/api/agents/bad%20id/logs", {}, json={"message": "x"})
    assert response.status_code == 401


# ---- 403: not the owner --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), AGENT_ROUTES, ids=[f"{m} {p}" for m, p, _ in AGENT_ROUTES])
async def test_another_users_agent_is_403(
    server: RunningServer, alices_agent: str, method: str, path: str, body: Any
) -> None:
    response = await status_of(server, method, path, server.headers("bob"), json=body)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "not_owner"
    assert "belongs to another user" in error["message"]
    async with server.client("alice") as alice:
        agent = (await alice.get(f"/api/agents/{alices_agent}")).json()
    assert (agent["name"], agent["line_count"], agent["status"]) == ("", 2, "running")


async def test_ticket_for_another_users_agent_is_403(server: RunningServer, alices_agent: str) -> None:
    async with server.client("bob") as bob:
        response = await bob.post("/api/stream-tickets", json={"agent": alices_agent})
    assert response.status_code == 403
    assert error_of(response)["code"] == "not_owner"


async def test_another_users_agents_are_not_listed(server: RunningServer, alices_agent: str) -> None:
    async with server.client("bob") as bob:
        answer = (await bob.get("/api/agents")).json()
    assert answer == {"agents": [], "next_cursor": None}


async def test_owner_check_comes_before_the_body(server: RunningServer, alices_agent: str) -> None:
    headers = {**server.headers("bob"), "Content-Type": "application/json"}
    ingest = await status_of(server, "POST", f"/api/agents/{alices_agent}/logs", headers, content=b"{broken")
    assert ingest.status_code == 403
    patch = await status_of(server, "PATCH", f"/api/agents/{alices_agent}", headers, content=b"{broken")
    assert patch.status_code == 403


async def test_two_users_racing_to_create_an_agent_get_one_owner(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        answers = await asyncio.gather(
            *(
                client.post("/api/agents/contested/logs", json=[f"{name} {n}"])
                for n in range(5)
                for client, name in ((alice, "alice"), (bob, "bob"))
            )
        )
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("root", scope="admin")) as admin:
        owner = (await admin.get("/api/agents/contested")).json()["owner"]
        lines = (await admin.get("/api/agents/contested/logs")).json()["lines"]
    codes = [response.status_code for response in answers]
    assert codes.count(200) == 5 and codes.count(403) == 5
    assert sorted(line["message"] for line in lines) == [f"{owner} {n}" for n in range(5)]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]


# ---- 404 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/agents/ghost"),
        ("PATCH", "/api/agents/ghost"),
        ("DELETE", "/api/agents/ghost"),
        ("GET", "/api/agents/ghost/logs"),
        ("GET", "/api/agents/ghost/logs/stream"),
    ],
)
async def test_unknown_agent_is_404(server: RunningServer, method: str, path: str) -> None:
    response = await status_of(server, method, path, server.headers("alice"), json={} if method == "PATCH" else None)
    assert response.status_code == 404
    assert error_of(response)["code"] == "agent_not_found"


async def test_ticket_for_unknown_agent_is_404(alice: httpx.AsyncClient) -> None:
    response = await alice.post("/api/stream-tickets", json={"agent": "ghost"})
    assert response.status_code == 404


# ---- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/agents/owned/logs", {"message": "x"}),
        ("POST", "/api/agents/fresh/logs", {"message": "x"}),
        ("POST", "/api/agents", {"id": "new"}),
        ("PATCH", "/api/agents/owned", {"status": "completed"}),
        ("DELETE", "/api/agents/owned", None),
    ],
)
async def test_read_only_token_cannot_write(
    server: RunningServer, alices_agent: str, method: str, path: str, body: Any
) -> None:
    headers = server.headers("alice", scope="logs:read")
    response = await status_of(server, method, path, headers, json=body)
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "insufficient_scope" and "logs:write" in error["message"]
    async with server.client("alice") as alice:
        assert (await alice.get(f"/api/agents/{alices_agent}")).json()["line_count"] == 2
        assert (await alice.get("/api/agents/fresh")).status_code == 404


async def test_read_only_token_reads(server: RunningServer, alices_agent: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("alice", scope="logs:read")) as reader:
        lines = (await reader.get(f"/api/agents/{alices_agent}/logs")).json()["lines"]
        assert [line["message"] for line in lines] == ["one", "two"]
        async with open_stream(reader, f"/api/agents/{alices_agent}/logs/stream") as stream:
            assert stream.response.status_code == 200
            event = await stream.next()
            assert event is not None and event.json()["logs"] == "one\ntwo\n"


@pytest.mark.parametrize(
    "path",
    [
        "/api/agents",
        "/api/agents/owned",
        "/api/agents/owned/logs",
        "/api/agents/owned/logs/stream",
        "/api/agents/ghost/logs",
    ],
)
async def test_write_only_token_cannot_read(server: RunningServer, alices_agent: str, path: str) -> None:
    response = await status_of(server, "GET", path, server.headers("alice", scope="logs:write"))
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "insufficient_scope" and "logs:read" in error["message"]


async def test_write_only_token_writes(server: RunningServer, alices_agent: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("alice", scope="logs:write")) as writer:
        response = await writer.post(f"/api/agents/{alices_agent}/logs", json="three")
    assert response.json() == {"accepted": 1, "first_seq": 3, "last_seq": 3}


async def test_scope_as_a_list_is_honoured_not_widened(server: RunningServer, alices_agent: str) -> None:
    headers = server.headers("alice", scope=["logs:read"])
    assert (await status_of(server, "GET", f"/api/agents/{alices_agent}/logs", headers)).status_code == 200
    posted = await status_of(server, "POST", f"/api/agents/{alices_agent}/logs", headers, json={"message": "x"})
    assert posted.status_code == 403
    assert error_of(posted)["code"] == "insufficient_scope"


@pytest.mark.parametrize("scope", [42, {"logs": "read"}, [1, 2]])
async def test_scope_of_unexpected_shape_is_401(server: RunningServer, alices_agent: str, scope: Any) -> None:
    response = await status_of(server, "GET", f"/api/agents/{alices_agent}/logs", server.headers("alice", scope=scope))
    assert response.status_code == 401
    assert "'scope'" in error_of(response)["message"]


async def test_empty_scope_grants_nothing(server: RunningServer, alices_agent: str) -> None:
    headers = server.headers("alice", scope="")
    read = await status_of(server, "GET", f"/api/agents/{alices_agent}/logs", headers)
    write = await status_of(server, "POST", f"/api/agents/{alices_agent}/logs", headers, json={"message": "x"})
    assert (read.status_code, write.status_code) == (403, 403)


async def test_admin_reads_and_writes_every_agent(server: RunningServer, alices_agent: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers("root", scope="admin")) as admin:
        assert (await admin.get(f"/api/agents/{alices_agent}")).json()["owner"] == "alice"
        history = (await admin.get(f"/api/agents/{alices_agent}/logs")).json()
        assert [line["message"] for line in history["lines"]] == ["one", "two"]
        posted = await admin.post(f"/api/agents/{alices_agent}/logs", json="from admin")
        assert posted.json() == {"accepted": 1, "first_seq": 3, "last_seq": 3}
        patched = await admin.patch(f"/api/agents/{alices_agent}", json={"name": "renamed by admin"})
        assert patched.status_code == 200 and patched.json()["owner"] == "alice"
        async with open_stream(admin, f"/api/agents/{alices_agent}/logs/stream") as stream:
            assert stream.response.status_code == 200
            event = await stream.next()
            assert event is not None and event.id == "3"
        assert (await admin.delete(f"/api/agents/{alices_agent}")).status_code == 204
    async with server.client("alice") as alice:
        assert (await alice.get(f"/api/agents/{alices_agent}")).status_code == 404


# ---- token transports ----------------------------------------------------------------------------


async def test_token_in_query_parameter(server: RunningServer, alices_agent: str) -> None:
    async with server.client(None) as anonymous:
        response = await anonymous.get(f"/api/agents/{alices_agent}/logs", params={"token": server.token("alice")})
        assert response.status_code == 200
        async with open_stream(
            anonymous, f"/api/agents/{alices_agent}/logs/stream", token=server.token("alice")
        ) as stream:
            assert stream.response.status_code == 200
        wrong = await anonymous.get(f"/api/agents/{alices_agent}/logs", params={"token": server.token("bob")})
        assert wrong.status_code == 403


async def test_token_in_cookie(server: RunningServer, alices_agent: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, cookies={"sentra_token": server.token("alice")}) as browser:
        response = await browser.get(f"/api/agents/{alices_agent}/logs")
        assert response.status_code == 200
        assert len(response.json()["lines"]) == 2
    async with httpx.AsyncClient(base_url=server.url, cookies={"sentra_token": "junk"}) as browser:
        assert (await browser.get(f"/api/agents/{alices_agent}/logs")).status_code == 401


async def test_bad_authorization_header_is_not_rescued_by_query_token(server: RunningServer, alices_agent: str) -> None:
    response = await status_of(
        server,
        "GET",
        f"/api/agents/{alices_agent}/logs?token={server.token('alice')}",
        {"Authorization": "Bearer junk"},
    )
    assert response.status_code == 401


async def test_tokens_are_masked_in_the_access_log(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(**{"server.access_log": True})
    token = server.token("alice")
    with caplog.at_level(logging.INFO, logger="sentra.access"):
        async with server.client(None) as anonymous:
            await anonymous.get("/api/agents", params={"token": token})
    access = [record.getMessage() for record in caplog.records if record.name == "sentra.access"]
    assert any("/api/agents?token=***" in line for line in access), access
    assert all(token not in line for line in access)


# ---- claims and keys -----------------------------------------------------------------------------


async def test_custom_subject_claim(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.subject_claim": "email"})
    token = jwt.encode({"email": "carol@example.com", "sub": "ignored-id"}, SECRET, algorithm="HS256")
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(token)) as carol:
        await carol.post("/api/agents/c1/logs", json="hi")
        assert (await carol.get("/api/agents/c1")).json()["owner"] == "carol@example.com"
    without = jwt.encode({"sub": "carol"}, SECRET, algorithm="HS256")
    response = await status_of(server, "GET", "/api/agents", bearer(without))
    assert response.status_code == 401
    assert "'email'" in error_of(response)["message"]


async def test_rs256_tokens_from_an_identity_provider(start_server: ServerFactory, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(public_pem)
    server = await start_server(**{"auth.algorithm": "RS256", "auth.public_key_file": str(key_file)})
    good = jwt.encode({"sub": "dave", "exp": int(time.time()) + 60}, key, algorithm="RS256")
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(good)) as dave:
        assert (await dave.post("/api/agents/d1/logs", json="signed by the IdP")).status_code == 200
        assert (await dave.get("/api/agents/d1")).json()["owner"] == "dave"
        # Sentra holds no signing key, so it cannot mint stream tickets.
        ticket = await dave.post("/api/stream-tickets", json={"agent": "d1"})
        assert ticket.status_code == 403
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token in (
        jwt.encode({"sub": "dave"}, other_key, algorithm="RS256"),
        make_token("dave"),  # HS256 with a secret: not accepted when the server expects RS256
        unsigned({"sub": "dave"}),
    ):
        response = await status_of(server, "GET", "/api/agents/d1", bearer(token))
        assert response.status_code == 401
        assert "www-authenticate" in response.headers

    # The classic confusion: HS256 keyed with the public key text must not pass for the IdP's signature.
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': 'root', 'scope': 'admin'})}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert (await status_of(server, "GET", "/api/agents", bearer(forged))).status_code == 401


async def test_es256_tokens_from_an_identity_provider(start_server: ServerFactory, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "idp-ec.pem"
    key_file.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    server = await start_server(**{"auth.algorithm": "ES256", "auth.public_key_file": str(key_file)})
    good = jwt.encode({"sub": "frank"}, key, algorithm="ES256")
    assert (await status_of(server, "GET", "/api/agents", bearer(good))).status_code == 200
    other = jwt.encode({"sub": "frank"}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert (await status_of(server, "GET", "/api/agents", bearer(other))).status_code == 401


async def test_audience_is_required_when_configured(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.audience": "sentra-prod"})
    right = await status_of(server, "GET", "/api/agents", server.headers("alice", aud="sentra-prod"))
    wrong = await status_of(server, "GET", "/api/agents", server.headers("alice", aud="another-service"))
    missing = await status_of(server, "GET", "/api/agents", server.headers("alice"))
    assert (right.status_code, wrong.status_code, missing.status_code) == (200, 401, 401)
    assert "audience" in error_of(wrong)["message"].lower()


# ---- revocation ----------------------------------------------------------------------------------


async def wait_for_status(server: RunningServer, headers: dict[str, str], path: str, status: int) -> int:
    """Poll `path` until it answers `status` (at most 5 s); returns the last status seen."""
    seen = 0
    for _ in range(50):
        seen = (await status_of(server, "GET", path, headers)).status_code
        if seen == status:
            break
        await asyncio.sleep(0.1)
    return seen


@pytest.mark.slow  # waits for the revocation check
async def test_revoked_token_is_refused_within_seconds(
    server: RunningServer, alices_agent: str, tmp_path: Path
) -> None:
    jti = uuid.uuid4().hex
    token = make_token("alice", jti=jti)
    headers = bearer(token)
    assert (await status_of(server, "GET", f"/api/agents/{alices_agent}", headers)).status_code == 200
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sentra",
        "token",
        "revoke",
        jti,
        "--db",
        str(server.db),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err
    assert jti in out.decode()
    started = time.monotonic()
    assert await wait_for_status(server, headers, f"/api/agents/{alices_agent}", 401) == 401
    assert time.monotonic() - started < 3.5
    response = await status_of(server, "GET", f"/api/agents/{alices_agent}", headers)
    assert error_of(response)["code"] == "token_revoked"
    # Other tokens of the same user still work.
    assert (await status_of(server, "GET", f"/api/agents/{alices_agent}", server.headers("alice"))).status_code == 200


@pytest.mark.slow  # waits for the revocation check
async def test_revocation_ends_an_open_stream_and_its_tickets(server: RunningServer, alices_agent: str) -> None:
    from sentra.storage.sqlite import revoke_token_offline

    jti = uuid.uuid4().hex
    token = make_token("alice", jti=jti)
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(token)) as client:
        ticket = (await client.post("/api/stream-tickets", json={"agent": alices_agent})).json()["token"]
        async with open_stream(client, f"/api/agents/{alices_agent}/logs/stream") as stream:
            first = await stream.next()
            assert first is not None and first.json()["logs"] == "one\ntwo\n"
            await asyncio.to_thread(revoke_token_offline, server.db, jti)
            last = await stream.next(timeout=5)
            assert last is not None
            assert last.json()["final"] is False and last.json()["reason"] == "token_revoked"
            assert await stream.next(timeout=5) is None
    response = await status_of(server, "GET", f"/api/agents/{alices_agent}/logs/stream", {}, params={"token": ticket})
    assert response.status_code == 401


# ---- stream tickets ------------------------------------------------------------------------------


async def test_stream_ticket_opens_only_that_agents_stream(server: RunningServer, alices_agent: str) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/other/logs", json="secret")
        response = await alice.post("/api/stream-tickets", json={"agent": alices_agent})
    assert response.status_code == 201
    answer = response.json()
    ticket = answer["token"]
    assert answer["agent"] == alices_agent
    assert time.time() < answer["expires_at"] <= time.time() + 61
    assert answer["stream_url"] == f"/api/agents/{alices_agent}/logs/stream?token={ticket}"
    assert jwt.decode(ticket, SECRET, algorithms=["HS256"])["scope"] == "logs:read"
    async with server.client(None) as page:
        async with page.stream("GET", answer["stream_url"]) as stream_response:
            assert stream_response.status_code == 200
            async for chunk in stream_response.aiter_text():
                if "one\\ntwo\\n" in chunk:
                    break
        denied = [
            await status_of(server, "GET", "/api/agents/other/logs/stream", {}, params={"token": ticket}),
            await status_of(server, "GET", "/api/agents/other/logs", {}, params={"token": ticket}),
            await status_of(server, "GET", "/api/streams", {}, params={"token": ticket, "agent": "other"}),
            await status_of(server, "POST", f"/api/agents/{alices_agent}/logs", bearer(ticket), json={"message": "x"}),
            await status_of(server, "POST", "/api/agents/newer/logs", bearer(ticket), json={"message": "x"}),
            await status_of(server, "PATCH", f"/api/agents/{alices_agent}", bearer(ticket), json={"status": "failed"}),
            await status_of(server, "DELETE", f"/api/agents/{alices_agent}", bearer(ticket)),
            await status_of(server, "POST", "/api/stream-tickets", bearer(ticket), json={"agent": alices_agent}),
        ]
    assert [response.status_code for response in denied] == [403] * len(denied)
    async with server.client("alice") as alice:
        agent = (await alice.get(f"/api/agents/{alices_agent}")).json()
        assert (agent["status"], agent["line_count"]) == ("running", 2)
        assert (await alice.get("/api/agents/newer")).status_code == 404


async def test_stream_ticket_does_not_follow_its_agent_id_to_a_new_owner(
    server: RunningServer, alices_agent: str
) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob:
        ticket = (await alice.post("/api/stream-tickets", json={"agent": alices_agent})).json()["token"]
        assert (await alice.delete(f"/api/agents/{alices_agent}")).status_code == 204
        assert (await bob.post(f"/api/agents/{alices_agent}/logs", json="bob's secret")).status_code == 200
    for path in (f"/api/agents/{alices_agent}/logs", f"/api/agents/{alices_agent}/logs/stream"):
        response = await status_of(server, "GET", path, {}, params={"token": ticket})
        assert response.status_code == 403
    listed = await status_of(server, "GET", "/api/agents", {}, params={"token": ticket})
    assert listed.json()["agents"] == []


async def test_stream_ticket_lists_only_its_agent(server: RunningServer, alices_agent: str) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/other/logs", json="x")
        ticket = (await alice.post("/api/stream-tickets", json={"agent": alices_agent})).json()["token"]
    listed = await status_of(server, "GET", "/api/agents", {}, params={"token": ticket})
    assert [agent["id"] for agent in listed.json()["agents"]] == [alices_agent]
    finished = await status_of(server, "GET", "/api/agents", {}, params={"token": ticket, "status": "completed"})
    assert finished.json()["agents"] == []


@pytest.mark.parametrize("body", [{}, {"agent": 5}, {"agent": None}])
async def test_stream_ticket_request_without_agent_is_400(alice: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await alice.post("/api/stream-tickets", json=body)
    assert response.status_code == 400
    assert '{"agent": "<agent id>"}' in error_of(response)["message"]


# ---- auth.mode none ------------------------------------------------------------------------------


async def test_auth_mode_none_needs_no_credentials(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.mode": "none"})
    async with server.client(None) as anyone:
        posted = await anyone.post("/api/agents/laptop/logs", json={"msg": "no token needed"})
        assert posted.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
        agent = (await anyone.get("/api/agents/laptop")).json()
        assert agent["owner"] == "local"
        assert [a["id"] for a in (await anyone.get("/api/agents")).json()["agents"]] == ["laptop"]
        async with open_stream(anyone, "/api/v1/stream-logs/request/laptop") as stream:
            assert stream.response.status_code == 200
            event = await stream.next()
            assert event is not None and event.json()["data"]["message"] == "no token needed"
    assert "Auth is off" in server.output.getvalue()


async def test_auth_mode_none_is_refused_off_loopback(start_server: ServerFactory) -> None:
    with pytest.raises(ConfigError, match=re.escape("auth.mode = none is refused on 0.0.0.0")):
        await start_server(**{"auth.mode": "none", "server.host": "0.0.0.0"})


async def test_generated_secret_is_kept_private_next_to_the_database(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    db = tmp_path / "data" / "logs.db"
    server = await start_server(**{"auth.jwt_secret": "", "db": db})
    secret_file = db.with_name("logs.db.secret")
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    token = make_token("erin", secret=secret)
    assert (await status_of(server, "GET", "/api/agents", bearer(token))).status_code == 200
    assert (await status_of(server, "GET", "/api/agents", server.headers("erin"))).status_code == 401
    await server.shutdown()
    again = await start_server(**{"auth.jwt_secret": "", "db": db})
    assert (await status_of(again, "GET", "/api/agents", bearer(token))).status_code == 200


async def test_empty_secret_file_stops_start_up(start_server: ServerFactory, tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    db.with_name("logs.db.secret").write_text("\n")
    with pytest.raises(StartupError, match="holds no usable secret"):
        await start_server(**{"auth.jwt_secret": "", "db": db})
