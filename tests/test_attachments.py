"""Attachments on one SQLite server: uploaded and read back byte for byte, owned like their agent, limited in size,
served so no SVG or HTML runs in Sentra's origin, announced by a line in the stream, taken out of a line's fields
when sent as a data URL, and removed with their agent or their lines."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sqlite3
import struct
import time
import zlib
from pathlib import Path

import httpx
from conftest import RunningServer, ServerFactory, error_of, open_stream, read_lines, stream_path


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour (what a browser can decode)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def upload(
    client: httpx.AsyncClient, agent_id: str, data: bytes, content_type: str, name: str, **params: str
) -> httpx.Response:
    """POST a file as an attachment of `agent_id`."""
    return await client.post(
        f"/api/agents/{agent_id}/attachments",
        params={"name": name, **params},
        content=data,
        headers={"Content-Type": content_type},
    )


def blob_rows(db: Path) -> int:
    """How many attachments the database file holds."""
    with sqlite3.connect(db) as conn:
        count = int(conn.execute("SELECT count(*) FROM attachments").fetchone()[0])
    conn.close()
    return count


async def test_uploaded_png_and_binary_read_back_byte_for_byte(alice: httpx.AsyncClient) -> None:
    image = png()
    response = await upload(alice, "browser", image, "image/png", "step-1.png")
    assert response.status_code == 201, response.text
    record = response.json()
    assert set(record) == {"id", "name", "content_type", "size", "url", "seq"}
    assert record["name"] == "step-1.png" and record["content_type"] == "image/png" and record["size"] == len(image)
    assert record["url"] == f"/api/agents/browser/attachments/{record['id']}" and record["seq"] == 1
    shown = await alice.get(record["url"])
    assert shown.status_code == 200 and shown.content == image
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["content-disposition"].startswith("inline;")
    assert "content-security-policy" not in shown.headers
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert "immutable" in shown.headers["cache-control"] and "max-age=31536000" in shown.headers["cache-control"]

    binary = os.urandom(1024 * 1024)
    response = await upload(alice, "browser", binary, "application/octet-stream", "trace.bin")
    assert response.status_code == 201 and response.json()["seq"] == 2
    fetched = await alice.get(response.json()["url"])
    assert fetched.content == binary and fetched.headers["content-type"] == "application/octet-stream"
    head = await alice.head(response.json()["url"])
    assert head.status_code == 200 and head.headers["content-length"] == str(len(binary)) and head.content == b""


async def test_the_line_carries_the_record_and_message(alice: httpx.AsyncClient) -> None:
    first = await upload(alice, "run", b"report", "text/plain", "report.txt")
    second = await upload(alice, "run", png(), "image/png", "after.png", message="after clicking Search")
    history = (await alice.get("/api/agents/run/logs")).json()["lines"]
    assert [line["message"] for line in history] == ["attachment report.txt", "after clicking Search"]
    expected = {key: second.json()[key] for key in ("id", "name", "content_type", "size", "url")}
    assert history[1]["fields"] == {"attachment": expected}
    assert history[0]["fields"]["attachment"]["id"] == first.json()["id"]


async def test_the_attachment_line_comes_live_in_the_stream(alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/live/logs", json={"message": "started"})
    async with open_stream(alice, stream_path("live")) as stream:
        assert stream.response.status_code == 200
        await read_lines(stream, 1)
        response = await upload(alice, "live", png(), "image/png", "shot.png")
        events = await read_lines(stream, 1)
    line = events[0].json()["lines"][0]
    assert line["seq"] == response.json()["seq"] == 2
    assert line["fields"]["attachment"]["url"] == response.json()["url"]


async def test_only_who_may_read_the_agent_gets_its_attachments(server: RunningServer) -> None:
    async with server.client("alice") as alice, server.client("bob") as bob, server.client(None) as anonymous:
        url = (await upload(alice, "private", png(), "image/png", "a.png")).json()["url"]
        assert (await anonymous.get(url)).status_code == 401
        assert error_of(await bob.get(url))["code"] == "not_owner"
        missing = await alice.get("/api/agents/private/attachments/" + "0" * 32)
        assert missing.status_code == 404 and error_of(missing)["code"] == "attachment_not_found"
        assert (await alice.get("/api/agents/nobody/attachments/" + "0" * 32)).status_code == 404
        assert (await alice.get("/api/agents/private/attachments/not-an-id")).status_code == 404
        # Another agent's attachment id, under one's own agent: not found there.
        other = (await upload(bob, "bobs", png(), "image/png", "b.png")).json()["id"]
        assert (await alice.get(f"/api/agents/private/attachments/{other}")).status_code == 404
        # Uploading is writing: bob may not add files to alice's agent, nobody without a token.
        assert (await upload(bob, "private", b"x", "text/plain", "x.txt")).status_code == 403
        assert (await upload(anonymous, "private", b"x", "text/plain", "x.txt")).status_code == 401
        admin = server.headers("root", scope="admin")
        assert (await alice.get(url, headers=admin)).status_code == 200


async def test_over_the_size_limit_is_413_and_nothing_is_stored(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_attachment_size": "64KiB"})
    async with server.client() as alice:
        await alice.post("/api/agents/big/logs", json={"message": "first"})
        response = await upload(alice, "big", b"x" * (64 * 1024 + 1), "application/octet-stream", "big.bin")
        assert response.status_code == 413 and "65536" in error_of(response)["message"]

        # Sent in chunks, without a declared length: refused once the body passes the limit.
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(5):
                yield b"y" * 20000

        chunked = await alice.post(
            "/api/agents/big/attachments", params={"name": "c.bin"}, content=chunks(), headers={"Content-Type": "a/b"}
        )
        assert chunked.status_code == 413
        assert (await upload(alice, "big", b"x" * (64 * 1024), "application/octet-stream", "ok.bin")).status_code == 201
        lines = (await alice.get("/api/agents/big/logs")).json()["lines"]
        assert [line["message"] for line in lines] == ["first", "attachment ok.bin"]
    assert blob_rows(server.db) == 1


async def test_svg_and_html_are_downloaded_in_a_sandbox(alice: httpx.AsyncClient) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    html = b"<html><script>fetch('/api/agents')</script></html>"
    for data, content_type, name in ((svg, "image/svg+xml", "x.svg"), (html, "text/html; charset=utf-8", "p.html")):
        url = (await upload(alice, "files", data, content_type, name)).json()["url"]
        served = await alice.get(url, headers={"Accept-Encoding": "identity"})
        assert served.content == data and served.headers["content-type"] == content_type
        assert served.headers["content-disposition"] == f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
        assert served.headers["content-security-policy"] == "sandbox"
        assert served.headers["x-content-type-options"] == "nosniff"


async def test_a_name_outside_ascii_is_kept_and_offered_exactly(alice: httpx.AsyncClient) -> None:
    response = await upload(alice, "names", b"%PDF-1.4", "application/pdf", 'résumé "final".pdf')
    assert response.json()["name"] == 'résumé "final".pdf'
    disposition = (await alice.get(response.json()["url"])).headers["content-disposition"]
    assert (
        disposition
        == "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


async def test_bad_uploads_say_what_was_wrong(alice: httpx.AsyncClient) -> None:
    missing = await alice.post("/api/agents/bad/attachments", content=b"x")
    assert missing.status_code == 400 and error_of(missing)["code"] == "invalid_name"
    bad_type = await upload(alice, "bad", b"x", "not a type", "x")
    assert bad_type.status_code == 400 and error_of(bad_type)["code"] == "invalid_content_type"
    assert (await alice.get("/api/agents/bad")).status_code == 404  # nothing created


async def test_a_data_url_field_becomes_an_attachment(server: RunningServer, alice: httpx.AsyncClient) -> None:
    image = png(8, 8)
    encoded = "data:image/png;base64," + base64.b64encode(image).decode()
    body = [
        {"message": "plain"},
        {"message": "after step 1", "fields": {"screenshot": encoded, "url": "https://example.com"}},
    ]
    assert (await alice.post("/api/agents/bu/logs", json=body)).status_code == 200
    raw = (await alice.get("/api/agents/bu/logs")).text
    assert "base64" not in raw
    line = (await alice.get("/api/agents/bu/logs")).json()["lines"][1]
    record = line["fields"]["screenshot"]
    assert line["fields"]["url"] == "https://example.com"
    assert record["name"] == "screenshot" and record["content_type"] == "image/png" and record["size"] == len(image)
    assert (await alice.get(record["url"])).content == image
    with sqlite3.connect(server.db) as conn:
        stored = conn.execute("SELECT fields FROM lines WHERE seq = 2").fetchone()[0]
    conn.close()
    assert "base64" not in stored and record["id"] in stored

    assert (await alice.delete("/api/agents/bu")).status_code == 204
    assert (await alice.get(record["url"])).status_code == 404
    assert blob_rows(server.db) == 0


async def test_a_screenshot_larger_than_a_line_is_taken(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_line_size": "4KiB"})
    image = os.urandom(100_000)
    encoded = "data:image/webp;base64," + base64.b64encode(image).decode()
    async with server.client() as alice:
        ok = await alice.post("/api/agents/w/logs", json={"message": "shot", "shot": encoded})
        assert ok.status_code == 200, ok.text
        too_long = await alice.post("/api/agents/w/logs", json={"message": "x" * 5000, "shot": encoded})
        assert too_long.status_code == 400 and "above the limit of 4096" in error_of(too_long)["message"]
        line = (await alice.get("/api/agents/w/logs")).json()["lines"]
        assert len(line) == 1 and (await alice.get(line[0]["fields"]["shot"]["url"])).content == image
    assert blob_rows(server.db) == 1


async def test_invalid_base64_names_the_line_and_field(server: RunningServer, alice: httpx.AsyncClient) -> None:
    body = '{"message": "ok"}\n{"message": "shot", "fields": {"page": "data:image/png;base64,@@@not base64"}}\n'
    response = await alice.post("/api/agents/b64/logs", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 400
    assert error_of(response) == {
        "code": "invalid_base64",
        "message": "line 2, field 'page': the data URL's base64 is not valid",
    }
    assert (await alice.get("/api/agents/b64")).status_code == 404
    assert blob_rows(server.db) == 0


async def test_an_image_over_the_limit_in_a_field_is_413(start_server: ServerFactory) -> None:
    server = await start_server(**{"limits.max_attachment_size": "1KiB"})
    encoded = "data:image/gif;base64," + base64.b64encode(b"g" * 2000).decode()
    async with server.client() as alice:
        response = await alice.post("/api/agents/g/logs", json={"message": "big", "fields": {"gif": encoded}})
        assert response.status_code == 413 and error_of(response)["code"] == "attachment_too_large"
        assert "line 1, field 'gif'" in error_of(response)["message"]
    assert blob_rows(server.db) == 0


async def test_other_data_urls_and_nested_values_stay_as_sent(alice: httpx.AsyncClient) -> None:
    fields = {
        "svg": "data:image/svg+xml;base64,PHN2Zy8+",
        "nested": {"shot": "data:image/png;base64,AAAA"},
        "text": "see data:image/png;base64,AAAA",
    }
    assert (await alice.post("/api/agents/keep/logs", json={"message": "m", "fields": fields})).status_code == 200
    assert (await alice.get("/api/agents/keep/logs")).json()["lines"][0]["fields"] == fields


async def test_retention_removes_the_blobs_of_removed_lines(start_server: ServerFactory) -> None:
    server = await start_server(**{"retention.max_lines_per_agent": 2, "retention.interval": "200ms"})
    async with server.client() as alice:
        old = (await upload(alice, "r", png(), "image/png", "old.png")).json()["url"]
        await alice.post("/api/agents/r/logs", json=[{"message": "a"}])
        kept = (await upload(alice, "r", png(), "image/png", "new.png")).json()["url"]
        deadline = time.monotonic() + 10
        while (await alice.get(old)).status_code != 404 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert (await alice.get(old)).status_code == 404
        assert (await alice.get(kept)).status_code == 200
    assert blob_rows(server.db) == 1


async def test_metrics_count_attachments_and_their_bytes(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await upload(alice, "m", b"a" * 1000, "text/plain", "a.txt")
    await upload(alice, "m", b"b" * 234, "text/plain", "b.txt")
    text = (await alice.get("/metrics")).text
    assert re.search(r"^sentra_attachments 2\.0$", text, re.M), text
    assert re.search(r"^sentra_attachment_bytes 1234\.0$", text, re.M)
    await alice.delete("/api/agents/m")
    text = (await alice.get("/metrics")).text
    assert re.search(r"^sentra_attachments 0\.0$", text, re.M)


async def test_upload_and_read_answer_as_documented(alice: httpx.AsyncClient) -> None:
    from test_openapi import check_headers, check_response

    uploaded = await upload(alice, "doc", png(), "image/png", "shot.png", message="the page")
    assert uploaded.status_code == 201
    record = check_response(uploaded)
    served = await alice.get(record["url"])
    assert "*/*" in check_headers(served)  # any stored type, with the documented headers
    line = (await alice.get("/api/agents/doc/logs")).json()["lines"][0]
    assert line["fields"]["attachment"] == {key: record[key] for key in ("id", "name", "content_type", "size", "url")}


async def test_a_data_url_whose_json_escapes_the_slash_is_taken_too(alice: httpx.AsyncClient) -> None:
    image = png(2, 2)
    encoded = "data:image\\/png;base64," + base64.b64encode(image).decode()  # as PHP's json_encode writes it
    body = '{"message": "escaped", "fields": {"shot": "' + encoded + '"}}'
    sent = await alice.post("/api/agents/esc/logs", content=body, headers={"Content-Type": "application/json"})
    assert sent.status_code == 200, sent.text
    record = (await alice.get("/api/agents/esc/logs")).json()["lines"][0]["fields"]["shot"]
    assert (await alice.get(record["url"])).content == image


async def test_a_share_link_reads_its_runs_attachments_and_no_others(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        shown = (await upload(alice, "shared-run", png(), "image/png", "s.png")).json()["url"]
        hidden = (await upload(alice, "other-run", png(), "image/png", "o.png")).json()["url"]
        created = await alice.post("/api/agents/shared-run/share", json={"ttl": "1h"})
        assert created.status_code == 201, created.text
        token = created.json()["token"]
    async with server.client(None) as guest:
        guest.headers["Authorization"] = f"Bearer {token}"
        assert (await guest.get(shown)).content == png()
        assert (await guest.get(hidden)).status_code == 403
        assert (await upload(guest, "shared-run", b"x", "text/plain", "x.txt")).status_code == 403


async def test_a_refused_request_stores_no_file(server: RunningServer, alice: httpx.AsyncClient) -> None:
    await alice.post("/api/agents/ended/logs", json={"message": "done"})
    assert (await alice.patch("/api/agents/ended", json={"status": "completed"})).status_code == 200
    refused = await upload(alice, "ended", png(), "image/png", "late.png")
    assert refused.status_code == 409 and error_of(refused)["code"] == "agent_finished"
    # A valid screenshot in a batch with a bad line: the batch is refused whole, its screenshot with it.
    encoded = "data:image/png;base64," + base64.b64encode(png()).decode()
    batch = [{"message": "shot", "shot": encoded}, {"message": "bad", "level": "LOUD"}]
    assert (await alice.post("/api/agents/mixed/logs", json=batch)).status_code == 400
    assert (await alice.post("/api/agents/ended/logs", json=batch[:1])).status_code == 409
    assert blob_rows(server.db) == 0
