"""/metrics counts every refused ingest request by its status, as an operator watching refusals would read it."""

from __future__ import annotations

import httpx
from conftest import ServerFactory
from prometheus_client.parser import text_string_to_metric_families


async def refusals_by_status(client: httpx.AsyncClient) -> dict[str, float]:
    """sentra_ingest_rejected, read from /metrics: {status: count}."""
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    for family in text_string_to_metric_families(answer.text):
        if family.name == "sentra_ingest_rejected":
            return {
                sample.labels["status"]: sample.value for sample in family.samples if sample.name.endswith("_total")
            }
    raise AssertionError("sentra_ingest_rejected is not exported")


async def test_every_refused_ingest_request_is_counted_by_its_status(start_server: ServerFactory) -> None:
    server = await start_server(
        **{"limits.max_body_size": 1024, "limits.max_lines_per_request": 100, "limits.ingest_rate": 1}
    )
    path = "/api/agents/counted/logs"
    async with server.client("alice") as alice, server.client("bob") as bob, server.client(None) as nobody:
        assert await refusals_by_status(alice) == {}
        # 100 lines at 1 line/s leave alice's token 99 s in debt: her next line is refused with 429.
        assert (await alice.post(path, json=["first"] * 100)).status_code == 200
        statuses = [
            (await alice.post(path, content=b"{oops", headers={"Content-Type": "application/json"})).status_code,
            (await alice.post(path, json=[])).status_code,
            (await nobody.post(path, json=["who?"])).status_code,
            (await alice.post(path, json=["x"], headers={"Authorization": "Bearer not-a-token"})).status_code,
            (await bob.post(path, json=["not mine"])).status_code,
            (await alice.post(path, content=b"x" * 2000, headers={"Content-Type": "text/plain"})).status_code,
            (await alice.post(path, json=["a"] * 101)).status_code,
            (await alice.post(path, json=["too soon"])).status_code,
        ]
        assert statuses == [400, 400, 401, 401, 403, 413, 413, 429]
        await alice.patch("/api/agents/counted", json={"status": "completed"})
        # Rate limiting is per token: a fresh one is let through to find the agent finished.
        late = await alice.post(path, json=["late"], headers=server.headers("alice", jti="another"))
        assert late.status_code == 409
        counted = await refusals_by_status(alice)
    assert counted == {"400": 2.0, "401": 2.0, "403": 1.0, "409": 1.0, "413": 2.0, "429": 1.0}
