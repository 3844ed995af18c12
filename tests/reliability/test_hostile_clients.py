"""Hostile clients: the server cuts what would hold it, refuses what it must not read or serve, and keeps
serving everyone else.

Slowloris headers and bodies, floods of connections and of streams from one token, oversized and malformed
requests, deeply nested JSON, path traversal and symlinks out of the viewer's files, a token for one user
reading another's agent by every endpoint and every way of sending a token, CORS, and the viewer's security
headers. (Tokens with alg none, HS/RS confusion, expiry and nbf are in tests/test_auth.py and in the fuzz suite;
the subscriber that never reads is in tests/test_slow_subscriber.py.)
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import tornado.netutil
from conftest import SECRET, RunningServer, ServerFactory, make_token, open_stream
from processes import ServerProcess

from sentra.app import make_app
from sentra.auth import TokenService
from sentra.config import load_config
from sentra.http.protocol import HTTP1Server
from sentra.registry import TopicRegistry
from sentra.storage.sqlite import Store

from .support import open_fds, record_figures

pytestmark = pytest.mark.slow  # a server child under hostile clients

tried: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def hostile_figures() -> Any:
    """Count the hostile cases each test tried, for docs/reliability.md."""
    yield
    record_figures("hostile", {"cases_tried": dict(sorted(tried.items())), "total": sum(tried.values())})


async def raw_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the server."""
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True if the server closes the connection (EOF or reset) within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


async def raw_answer(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes and read until the server closes (HTTP/1.0 style) or the timeout."""
    reader, writer = await raw_connection(port)
    data = b""
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return data


async def healthy(url: str) -> bool:
    """The server answers /healthz with 200, promptly."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        return (await client.get("/healthz")).status_code == 200


async def settle_fds(pid: int, baseline: int, within: float = 10) -> int:
    """The server's open descriptors once they are back to `baseline` (or after `within` seconds)."""
    deadline = time.monotonic() + within
    while open_fds(pid) > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return open_fds(pid)


@pytest.fixture
async def child(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A server process with short header and body timeouts and a small per-user stream limit."""
    proc = ServerProcess.in_folder(
        tmp_path,
        server={"header_timeout": "1s", "body_timeout": "2s"},
        limits={"max_streams_per_user": 20},
        streams={"heartbeat": "1s"},
    ).start()
    try:
        assert await healthy(proc.url)
        await asyncio.sleep(0.2)
        yield proc
    finally:
        assert proc.terminate() == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ---- connections that would hold the server -----------------------------------------------------------------


async def test_slowloris_headers_are_cut_after_the_header_timeout_while_others_are_served(
    child: ServerProcess,
) -> None:
    baseline = open_fds(child.process.pid)
    attackers = [await raw_connection(child.port) for _ in range(50)]
    started = time.monotonic()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        # One byte every 200 ms: each arrives well within any per-read timeout, the headers never end.
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000:
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except (ConnectionError, OSError):
                return
            await asyncio.sleep(0.2)

    trickling = [asyncio.create_task(trickle(writer)) for _, writer in attackers]
    # Others are served at once while the attack goes on.
    for _ in range(5):
        assert await healthy(child.url)
    cut = await asyncio.gather(*(closed_by_server(reader, within=6) for reader, _ in attackers))
    elapsed = time.monotonic() - started
    for task in trickling:
        task.cancel()
    for _, writer in attackers:
        writer.close()
    tried["slowloris headers"] += len(attackers)
    assert all(cut), f"{cut.count(False)} slow connections were still open after {elapsed:.1f} s"
    assert elapsed < 6
    assert await healthy(child.url)
    assert await settle_fds(child.process.pid, baseline) <= baseline


async def test_slow_body_is_cut_after_the_body_timeout(child: ServerProcess) -> None:
    reader, writer = await raw_connection(child.port)
    writer.write(
        b"POST /api/agents/slow/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        + f"Authorization: Bearer {make_token('alice')}\r\nContent-Length: 100000\r\n\r\n".encode()
    )
    await writer.drain()

    async def trickle() -> None:
        for _ in range(100):
            try:
                writer.write(b"x")
                await writer.drain()
            except (ConnectionError, OSError):
                return
            await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    assert await closed_by_server(reader, within=6)
    task.cancel()
    writer.close()
    tried["slow body"] += 1
    async with httpx.AsyncClient(base_url=child.url, headers={"Authorization": f"Bearer {make_token('alice')}"}) as c:
        assert (await c.get("/api/agents/slow")).status_code == 404, "nothing of a body never finished is stored"


async def test_one_token_opening_thousands_of_streams_gets_429_while_others_still_stream(
    child: ServerProcess,
) -> None:
    token = make_token("greedy")
    async with httpx.AsyncClient(base_url=child.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        assert (await c.post("/api/agents/hog/logs", json=["first"])).status_code == 200
    baseline = open_fds(child.process.pid)
    request = (
        f"GET /api/agents/hog/logs/stream HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    held = []
    for _ in range(20):
        reader, writer = await raw_connection(child.port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        held.append((reader, writer))

    answers: Counter[int] = Counter()
    retry_after: set[str] = set()
    gate = asyncio.Semaphore(50)

    async def attempt() -> None:
        async with gate:
            raw = await raw_answer(child.port, request, timeout=10)
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        answers[status] += 1
        if status == 429:
            assert json.loads(body)["error"]["code"] == "too_many_streams"
            match = re.search(rb"\r\nRetry-After: (\d+)", head)
            assert match is not None
            retry_after.add(match.group(1).decode())

    await asyncio.gather(*(attempt() for _ in range(2000)))
    tried["streams over the per-user limit"] += 2000
    assert answers == {429: 2000}, answers
    # Another user streams and gets lines while the greedy one is at its limit.
    async with httpx.AsyncClient(base_url=child.url, headers={"Authorization": f"Bearer {make_token('fair')}"}) as c:
        assert (await c.post("/api/agents/fair/logs", json=["hello"])).status_code == 200
        async with open_stream(c, "/api/agents/fair/logs/stream") as stream:
            assert stream.response.status_code == 200
            event = await stream.next()
            assert event is not None and event.json()["lines"][0]["message"] == "hello"
    for _, writer in held:
        writer.close()
    # Once its streams are closed, the same token may stream again; nothing is left open.
    async with httpx.AsyncClient(base_url=child.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        deadline = time.monotonic() + 10
        while (await c.get("/healthz")).json()["open_streams"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        async with open_stream(c, "/api/agents/hog/logs/stream") as stream:
            assert stream.response.status_code == 200
    assert await settle_fds(child.process.pid, baseline) <= baseline


async def test_thousands_of_connections_opened_and_dropped_leave_the_server_serving(child: ServerProcess) -> None:
    baseline = open_fds(child.process.pid)
    token = make_token("knocker")
    kinds: Counter[str] = Counter()
    gate = asyncio.Semaphore(100)

    async def knock(n: int) -> None:
        async with gate:
            _, writer = await raw_connection(child.port)
            try:
                if n % 3 == 0:
                    kinds["closed at once"] += 1
                elif n % 3 == 1:
                    kinds["half a request, then closed"] += 1
                    writer.write(b"GET /api/agents HTTP/1.1\r\nAuthoriz")
                    await writer.drain()
                else:
                    kinds["request, answer not read"] += 1
                    writer.write(
                        f"GET /api/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
                    )
                    await writer.drain()
            finally:
                writer.close()

    await asyncio.gather(*(knock(n) for n in range(3000)))
    tried.update({f"connection: {kind}": count for kind, count in kinds.items()})
    assert await healthy(child.url)
    assert await settle_fds(child.process.pid, baseline) <= baseline


# ---- oversized and malformed requests ------------------------------------------------------------------------


MALFORMED = {
    "headers of 200 KB": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    "URL of 100 KB": b"GET /healthz?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "Content-Length and chunked": b"POST /api/agents/x/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST /api/agents/x/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nhello!",
    "negative Content-Length": b"POST /api/agents/x/logs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "bad chunk size": b"POST /api/agents/x/logs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "header without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_oversized_or_malformed_request_is_refused_or_cut_and_the_server_goes_on(
    child: ServerProcess, name: str
) -> None:
    answer = await raw_answer(child.port, MALFORMED[name], timeout=5)
    tried["oversized or malformed request"] += 1
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
    assert await healthy(child.url)


async def test_content_length_and_integers_of_thousands_of_digits_are_client_errors(server: RunningServer) -> None:
    digits = "9" * 5000
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/big/logs", json=["one"])).status_code == 200
        for path in (
            f"/api/agents/big/logs?limit={digits}",
            f"/api/agents/big/logs?after={digits}",
            f"/api/agents?cursor={digits}",
            f"/api/agents/big/logs/stream?tail={digits}",
        ):
            answer = await alice.get(path)
            assert answer.status_code == 400, (path[:40], answer.text)
        tried["integer of 5000 digits"] += 4
    answer = await raw_answer(
        server.port,
        b"POST /api/agents/big/logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {make_token('alice')}\r\nContent-Length: {digits}\r\n\r\n".encode(),
    )
    tried["Content-Length of 5000 digits"] += 1
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize("depth", [50, 99, 100, 101, 500, 980, 5000, 100_000])
async def test_deeply_nested_json_is_refused_or_reads_back_everywhere(server: RunningServer, depth: int) -> None:
    agent = f"deep-{depth}"
    fields = '{"a":' * depth + "1" + "}" * depth
    body = f'{{"message": "deep", "fields": {fields}}}'.encode()
    tried["nested JSON"] += 3
    async with server.client("alice") as alice:
        posted = await alice.post(
            f"/api/agents/{agent}/logs", content=body, headers={"Content-Type": "application/json"}
        )
        nested_list = "[" * depth + "]" * depth
        created = await alice.post("/api/agents", content=f'{{"id": "x", "labels": {nested_list}}}'.encode())
        assert created.status_code == 400
        ticket = await alice.post("/api/stream-tickets", content=f'{{"agent": {nested_list}}}'.encode())
        assert ticket.status_code == 400
        if depth > 100:
            assert posted.status_code == 400, posted.text
            assert "nested too deeply" in posted.json()["error"]["message"]
            return
        assert posted.status_code == 200, posted.text
        history = await alice.get(f"/api/agents/{agent}/logs")
        assert history.status_code == 200
        assert json.dumps(history.json()["lines"][0]["fields"]) == json.dumps(json.loads(fields))
        for fmt in ("ndjson", "text"):
            assert (await alice.get(f"/api/agents/{agent}/logs", params={"format": fmt})).status_code == 200
        async with open_stream(alice, f"/api/agents/{agent}/logs/stream") as stream:
            event = await stream.next()
            assert event is not None and event.json()["lines"][0]["message"] == "deep"


NULLS = [
    ("POST", "/api/agents/nulls/logs", {"message": "x", "ts": None}),
    ("POST", "/api/agents/nulls/logs", {"message": "x", "level": None}),
    ("POST", "/api/agents/nulls/logs", {"message": "x", "source": None}),
    ("POST", "/api/agents/nulls/logs", {"message": None}),
    ("POST", "/api/agents", {"id": None}),
    ("POST", "/api/agents", {"id": "nulls-2", "name": None}),
    ("POST", "/api/agents", {"id": "nulls-3", "labels": None}),
    ("PATCH", "/api/agents/nulls", {"status": None}),
    ("PATCH", "/api/agents/nulls", {"labels": None}),
    ("PATCH", "/api/agents/nulls", {"name": None}),
]


async def test_null_where_a_value_belongs_is_refused_and_changes_nothing(server: RunningServer) -> None:
    # Found by the fuzzer: null was taken as "left out", so {"id": null} created an agent with a random id.
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents", json={"id": "nulls", "labels": {"k": "v"}})).status_code == 201
        for method, path, body in NULLS:
            answer = await alice.request(method, path, json=body)
            assert answer.status_code == 400, (method, path, body, answer.text)
            assert "null" in answer.json()["error"]["message"]
        agents = (await alice.get("/api/agents")).json()["agents"]
        assert [(a["id"], a["labels"], a["line_count"]) for a in agents] == [("nulls", {"k": "v"}, 0)]
    tried["null instead of a value"] += len(NULLS)


# ---- path traversal and symlinks -----------------------------------------------------------------------------


TRAVERSALS = [
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/%252e%252e/%252e%252e/etc/passwd",
    "//etc/passwd",
    "/%2Fetc%2Fpasswd",
    "/.%2e/.%2e/.%2e/etc/passwd",
    "/..\\..\\..\\etc\\passwd",
    "/index.html/../../pyproject.toml",
    "/../pyproject.toml",
    "/%2e%2e/sentra/auth.py",
    "/..;/pyproject.toml",
    "/index.html%00.js",
    "/.git/config",
    "/C:/Windows/win.ini",
]


async def test_path_traversal_never_reaches_a_file_outside_the_viewer(server: RunningServer) -> None:
    secrets = [b"root:x:0:0", b"[build-system]", b"def load_or_create_secret", b"[core]"]
    for path in TRAVERSALS:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        answer = await raw_answer(server.port, request)
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 403, 404), (path, answer[:200])
        assert not any(secret in answer for secret in secrets), path
    tried["path traversal"] += len(TRAVERSALS)


@pytest.fixture
async def viewer_with_symlinks(tmp_path: Path) -> AsyncIterator[str]:
    """A server whose viewer folder holds a file, a symlink to a file outside it, and one to a folder outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the secret outside the viewer")
    files = tmp_path / "viewer"
    files.mkdir()
    (files / "index.html").write_text("<!doctype html><title>viewer</title>")
    (files / "inside.txt").write_text("inside")
    (files / "link.txt").symlink_to(outside / "secret.txt")
    (files / "dir").symlink_to(outside, target_is_directory=True)
    (files / "ok.txt").symlink_to(files / "inside.txt")
    config = load_config(None, {"storage.db": str(tmp_path / "s.db"), "auth.jwt_secret": SECRET, "server.port": 0})
    store = Store(config.db_path)
    await store.open()
    registry = TopicRegistry()
    store.listener = registry
    app = make_app(config, store, registry, TokenService(config), static_files=files)
    server = HTTP1Server(app, max_body_size=config["limits.max_body_size"])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    await server.add_sockets(sockets)
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        server.stop()
        await server.close_all_connections()
        await store.close()


async def test_symlinks_out_of_the_viewer_folder_are_not_followed(viewer_with_symlinks: str) -> None:
    async with httpx.AsyncClient(base_url=viewer_with_symlinks) as client:
        assert (await client.get("/inside.txt")).text == "inside"
        assert (await client.get("/ok.txt")).text == "inside", "a link that stays inside is fine"
        for path in ("/link.txt", "/dir/secret.txt"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert "the secret outside" not in answer.text
    tried["symlink out of the viewer"] += 2


# ---- another user's agent, by every endpoint and every way of sending a token ---------------------------------


def as_bob(transport: str) -> dict[str, Any]:
    """Request options that carry bob's token by header, query parameter or cookie."""
    token = make_token("bob")
    if transport == "header":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    if transport == "query":
        return {"params": {"token": token}}
    return {"headers": {"Cookie": f"sentra_token={token}"}}


ALICE_ONLY: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/agents/alices", {}),
    ("PATCH", "/api/agents/alices", {"json": {"name": "taken", "status": "failed"}}),
    ("DELETE", "/api/agents/alices", {}),
    ("GET", "/api/agents/alices/logs", {}),
    ("GET", "/api/agents/alices/logs", {"params": {"format": "ndjson"}}),
    ("GET", "/api/agents/alices/logs", {"params": {"format": "text"}}),
    ("GET", "/api/agents/alices/logs", {"params": {"before": 3, "limit": 1}}),
    ("POST", "/api/agents/alices/logs", {"json": ["bob was here"]}),
    ("GET", "/api/agents/alices/logs/stream", {}),
    ("GET", "/api/agents/alices/logs/stream", {"headers": {"Last-Event-ID": "0"}}),
    ("GET", "/api/v1/stream-logs/request/alices", {}),
    ("GET", "/api/streams", {"params": {"agent": "alices"}}),
    ("GET", "/api/streams", {"params": {"agent": ["bobs", "alices"]}}),
    ("POST", "/api/stream-tickets", {"json": {"agent": "alices"}}),
]


@pytest.fixture
async def two_users(server: RunningServer) -> RunningServer:
    """alice's agent `alices` (3 lines, label team=red) and bob's agent `bobs`."""
    async with server.client("alice") as alice, server.client("bob") as bob:
        assert (await alice.post("/api/agents", json={"id": "alices", "labels": {"team": "red"}})).status_code == 201
        assert (await alice.post("/api/agents/alices/logs", json=["a1", "a2", "a3"])).status_code == 200
        assert (await bob.post("/api/agents/bobs/logs", json=["b1"])).status_code == 200
    return server


def merged(options: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Request options with bob's credentials merged into the endpoint's own."""
    out = {key: value for key, value in extra.items() if key not in ("headers", "params")}
    out["headers"] = {**extra.get("headers", {}), **options.get("headers", {})}
    params = {**extra.get("params", {}), **options.get("params", {})}
    if params:
        out["params"] = params
    return out


@pytest.mark.parametrize("transport", ["header", "query", "cookie"])
async def test_a_token_for_bob_gets_403_from_every_endpoint_of_alices_agent(
    two_users: RunningServer, transport: str
) -> None:
    async with httpx.AsyncClient(base_url=two_users.url, timeout=10) as client:
        for method, path, extra in ALICE_ONLY:
            request = client.build_request(method, path, **merged(as_bob(transport), extra))
            answer = await client.send(request, stream=True)
            try:
                await answer.aread()
            finally:
                await answer.aclose()
            assert answer.status_code == 403, (method, path, extra, answer.status_code)
            assert answer.json()["error"]["code"] == "not_owner"
            assert b"a1" not in answer.content
    tried["another user's agent, by endpoint and transport"] += len(ALICE_ONLY)
    async with two_users.client("alice") as alice:
        agent = (await alice.get("/api/agents/alices")).json()
        lines = (await alice.get("/api/agents/alices/logs")).json()["lines"]
    assert (agent["name"], agent["status"], agent["line_count"]) == ("", "running", 3)
    assert [line["message"] for line in lines] == ["a1", "a2", "a3"]


async def test_listings_feeds_and_label_streams_never_show_bob_alices_agent(two_users: RunningServer) -> None:
    async with two_users.client("bob") as bob, two_users.client("alice") as alice:
        listed = (await bob.get("/api/agents", params={"label": "team=red"})).json()["agents"]
        assert listed == []
        assert [a["id"] for a in (await bob.get("/api/agents")).json()["agents"]] == ["bobs"]
        async with (
            open_stream(bob, "/api/agent-events") as feed,
            open_stream(bob, "/api/streams", label="team=red") as by_label,
            open_stream(bob, "/api/v1/stream-logs/request/not-yet") as waiting,
        ):
            snapshot = (await feed.next()).json()  # type: ignore[union-attr]
            assert [a["id"] for a in snapshot["agents"]] == ["bobs"]
            # alice changes her agent, logs, and creates the agent bob's seed-001 stream waits for.
            assert (await alice.patch("/api/agents/alices", json={"name": "renamed"})).status_code == 200
            assert (await alice.post("/api/agents/alices/logs", json=["secret"])).status_code == 200
            assert (await alice.post("/api/agents/not-yet/logs", json=["secret too"])).status_code == 200
            assert (await bob.post("/api/agents/bobs/logs", json=["b2"])).status_code == 200
            seen = []
            for reader in (feed, by_label, waiting):
                try:
                    while (event := await reader.next(timeout=1.5)) is not None:
                        seen.append(event.data)
                except TimeoutError:
                    pass
    assert not [data for data in seen if "alices" in data or "secret" in data or "not-yet" in data], seen
    tried["another user's agent in listings, feeds and label streams"] += 5


async def test_a_ticket_for_bobs_agent_does_not_open_alices(two_users: RunningServer) -> None:
    async with two_users.client("bob") as bob:
        ticket = (await bob.post("/api/stream-tickets", json={"agent": "bobs"})).json()["ticket"]
    async with httpx.AsyncClient(base_url=two_users.url) as client:
        for path in ("/api/agents/alices/logs/stream", "/api/v1/stream-logs/request/alices", "/api/agents/alices"):
            answer = await client.get(path, params={"token": ticket})
            assert answer.status_code == 403, path
    tried["ticket for another agent"] += 3


# ---- CORS and the viewer's headers ---------------------------------------------------------------------------


async def test_cors_is_off_by_default(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        for method, path in (("GET", "/api/agents"), ("OPTIONS", "/api/agents"), ("GET", "/api/agents/none")):
            headers = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"}
            answer = await alice.request(method, path, headers=headers)
            assert "access-control-allow-origin" not in answer.headers, (method, path)
            assert "access-control-allow-credentials" not in answer.headers
    tried["CORS"] += 3


async def test_cors_allows_only_the_configured_origins(start_server: ServerFactory) -> None:
    server = await start_server(**{"server.cors_origins": ["https://viewer.example"]})
    async with server.client("alice") as alice:
        for origin in ("https://viewer.example", "https://evil.example", "null", "https://viewer.example.evil.example"):
            for method in ("GET", "OPTIONS"):
                headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
                answer = await alice.request(method, "/api/agents", headers=headers)
                allowed = answer.headers.get("access-control-allow-origin")
                if origin == "https://viewer.example":
                    assert allowed == origin and "Origin" in answer.headers.get("vary", "")
                    if method == "OPTIONS":
                        assert answer.status_code == 204
                        assert "POST" in answer.headers["access-control-allow-methods"]
                        assert "Authorization" in answer.headers["access-control-allow-headers"]
                else:
                    assert allowed is None, (origin, method)
                tried["CORS"] += 1
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        unauthenticated = await anonymous.get("/api/agents", headers={"Origin": "https://viewer.example"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers.get("access-control-allow-origin") == "https://viewer.example"


class _InlineScript(HTMLParser):
    """Finds what a strict CSP would block in a page: inline scripts, event handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self._in_script = True
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}=javascript:")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline <script>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


async def test_viewer_is_served_with_a_strict_csp_nosniff_and_no_framing(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = await client.get("/")
        assert page.status_code == 200
        parser = _InlineScript()
        parser.feed(page.text)
        assert parser.found == [], parser.found
        assets = sorted(set(re.findall(r'(?:src|href)="/?([\w./-]+\.(?:js|css|svg))"', page.text)))
        assert assets, "the viewer loads its scripts and styles from files"
        for path in ["/", *(f"/{asset}" for asset in assets), "/no-such-file.js", "/../etc/passwd"]:
            answer = await client.get(path)
            csp = answer.headers.get("content-security-policy", "")
            directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
            assert directives.get("script-src") == ["'self'"], (path, csp)
            assert directives.get("frame-ancestors") == ["'none'"], (path, csp)
            assert directives.get("object-src") == ["'none'"], (path, csp)
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
            assert answer.headers.get("x-content-type-options") == "nosniff", path
            assert answer.headers.get("x-frame-options") == "DENY", path
            tried["viewer security headers"] += 1
        api = await client.get("/api/agents")
        assert api.headers.get("x-content-type-options") == "nosniff"
        assert api.headers["content-type"].startswith("application/json")
