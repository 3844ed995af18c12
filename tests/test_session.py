"""/api/session: the viewer signs in by posting a token once; the server keeps it in an HttpOnly cookie."""

from __future__ import annotations

import json
import time
from http.cookies import SimpleCookie

import httpx
from conftest import RunningServer, ServerFactory, make_token


def set_cookie(response: httpx.Response, name: str = "sentra_token") -> dict[str, str]:
    """The attributes of the Set-Cookie header for `name` (lower-cased keys; the value under 'value')."""
    for header in response.headers.get_list("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            morsel = jar[name]
            attributes = {key: str(value) for key, value in morsel.items() if value}
            flags = {part.strip().lower() for part in header.split(";")}
            attributes.update({flag: "true" for flag in ("httponly", "secure") if flag in flags})
            return {"value": morsel.value, **attributes}
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('Set-Cookie')}")


async def test_sign_in_with_header_sets_httponly_strict_cookie_until_the_token_expires(server: RunningServer) -> None:
    token = make_token("alice", exp=int(time.time()) + 3600, scope="logs:read")
    async with server.client(None) as browser:
        response = await browser.post("/api/session", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "alice"
    assert response.json()["scopes"] == ["logs:read"]
    assert response.json()["auth"] == "jwt"
    cookie = set_cookie(response)
    assert cookie["value"] == token
    assert cookie["httponly"] == "true"
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert 3590 <= int(cookie["max-age"]) <= 3600
    assert "secure" not in cookie  # plain http on loopback: a Secure cookie would never be sent back


async def test_cookie_alone_then_authenticates_the_api(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        await alice.post("/api/agents/run-1/logs", json="hello")
    async with server.client(None) as browser:
        signed_in = await browser.post("/api/session", json={"token": server.token("alice")})
        assert signed_in.status_code == 200, signed_in.text
        assert browser.cookies.get("sentra_token") == server.token("alice")
        me = await browser.get("/api/session")
        agents = await browser.get("/api/agents")
    assert me.status_code == 200 and me.json()["subject"] == "alice"
    assert [agent["id"] for agent in agents.json()["agents"]] == ["run-1"]


async def test_sign_out_clears_the_cookie(server: RunningServer) -> None:
    async with server.client(None) as browser:
        await browser.post("/api/session", json={"token": server.token("alice")})
        response = await browser.delete("/api/session")
        assert response.status_code == 204
        cookie = set_cookie(response)
        assert cookie["value"] == ""
        assert "expires" in cookie or cookie.get("max-age") == "0"
        assert "sentra_token" not in browser.cookies
        after = await browser.get("/api/session")
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "not_authenticated"


async def test_sign_out_without_a_session_still_succeeds(server: RunningServer) -> None:
    async with server.client(None) as browser:
        response = await browser.delete("/api/session")
    assert response.status_code == 204


async def test_invalid_token_sets_no_cookie(server: RunningServer) -> None:
    forged = make_token("alice", secret="another-secret-that-is-long-enough-0123456789")
    expired = make_token("alice", exp=1_000_000_000)
    async with server.client(None) as browser:
        bad = await browser.post("/api/session", json={"token": forged})
        old = await browser.post("/api/session", headers={"Authorization": f"Bearer {expired}"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "invalid_token")
    assert (old.status_code, old.json()["error"]["code"]) == (401, "token_expired")
    assert "Set-Cookie" not in bad.headers and "Set-Cookie" not in old.headers


async def test_only_a_json_body_signs_in_so_other_sites_cannot_post_a_form(server: RunningServer) -> None:
    body = json.dumps({"token": server.token("alice")})
    async with server.client(None) as browser:
        form = await browser.post("/api/session", content=body, headers={"Content-Type": "text/plain"})
        nothing = await browser.post("/api/session")
        extra = await browser.post("/api/session", json={"token": server.token("alice"), "remember": True})
    assert form.status_code == 400 and "Set-Cookie" not in form.headers
    assert nothing.status_code == 401 and "Set-Cookie" not in nothing.headers
    assert extra.status_code == 400 and "remember" in extra.json()["error"]["message"]


async def test_token_without_expiry_gets_a_cookie_that_still_ends(server: RunningServer) -> None:
    async with server.client(None) as browser:
        response = await browser.post("/api/session", json={"token": server.token("alice")})
    assert int(set_cookie(response)["max-age"]) == 30 * 86400


async def test_cookie_name_follows_the_setting(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.cookie_name": "viewer_auth"})
    async with server.client(None) as browser:
        response = await browser.post("/api/session", json={"token": server.token("alice")})
        assert set_cookie(response, "viewer_auth")["value"] == server.token("alice")
        assert (await browser.get("/api/agents")).status_code == 200


async def test_with_auth_off_the_session_is_the_local_user_without_a_cookie(start_server: ServerFactory) -> None:
    server = await start_server(**{"auth.mode": "none"})
    async with server.client(None) as browser:
        me = await browser.get("/api/session")
        signed_in = await browser.post("/api/session")
    assert me.status_code == 200
    assert me.json() == {"subject": "local", "scopes": ["admin", "logs:read", "logs:write"], "auth": "none",
                         "expires_at": None}  # fmt: skip
    assert signed_in.status_code == 200 and "Set-Cookie" not in signed_in.headers
