"""The core path end to end: a line posted over HTTP reaches an open SSE stream and the history."""

from __future__ import annotations

from conftest import RunningServer, open_stream


async def test_posted_line_reaches_open_stream_and_history(server: RunningServer) -> None:
    async with server.client("alice") as client:
        first = await client.post("/api/agents/run-1/logs", json={"message": "hello"})
        assert first.json() == {"accepted": 1, "first_seq": 1, "last_seq": 1}
        async with open_stream(client, "/api/agents/run-1/logs/stream") as stream:
            assert stream.response.status_code == 200
            replay = await stream.next()
            assert replay is not None and replay.id == "1"
            assert replay.json()["logs"] == "hello\n"
            await client.post("/api/agents/run-1/logs", json={"message": "live line"})
            live = await stream.next()
            assert live is not None and live.id == "2"
            assert live.json()["lines"][0]["message"] == "live line"
        history = await client.get("/api/agents/run-1/logs")
        assert [line["message"] for line in history.json()["lines"]] == ["hello", "live line"]
