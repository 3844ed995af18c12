"""API fuzzing: schemathesis drives every operation of the server's own /api/openapi.json against a real server.

Schema-valid and schema-violating requests, with a valid token and with every kind of invalid one: no answer is a
5xx, every answer matches its documented status, headers and schema, a schema-violating request is refused, an
operation that needs a token refuses one without it, and the server keeps serving afterwards.

SENTRA_FUZZ_EXAMPLES sets the examples per operation and mode (short default for CI).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
import schemathesis
from conftest import SECRET, RunningServer, make_token
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from processes import ServerProcess
from schemathesis import GenerationMode
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from .support import knob, record_figures, start_child

EXAMPLES = int(knob("SENTRA_FUZZ_EXAMPLES", 20))
# The same examples every run, so a red test run means a change broke something; SENTRA_FUZZ_RANDOM=1 explores.
RANDOM = bool(knob("SENTRA_FUZZ_RANDOM", 0))
SSE = "text/event-stream"
# How long one streaming answer is read before the fuzzer moves on (a live stream never ends by itself); other
# answers get a generous timeout, since a slow answer is not what this suite measures.
STREAM_READ_SECONDS = 0.5
ANSWER_SECONDS = 30.0

# What is checked on every answer. Left out: positive_data_acceptance, which expects every schema-valid body to
# be accepted, while the schema cannot say everything Sentra checks (a level must be >= 0, a ts after 1970, a
# line under limits.max_line_size); the hypothesis suite of the ingest parser covers those rules instead.
load_all_checks()
CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]


def bad_tokens() -> list[tuple[str, str]]:
    """(kind, token) for every way a token can be wrong."""
    now = int(time.time())
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(f'{{"sub":"alice","iat":{now}}}'.encode()).decode()
    return [
        ("garbage", "not-a-jwt"),
        ("expired", make_token("alice", exp=now - 3600)),
        ("not-yet-valid", make_token("alice", nbf=now + 3600)),
        ("alg-none", f"{header}.{body}."),
        ("wrong-secret", make_token("alice", secret="another-secret-that-is-long-enough-0123456789")),
        ("hs512", jwt.encode({"sub": "alice"}, SECRET * 2, algorithm="HS512")),
        ("no-subject", jwt.encode({"iat": now}, SECRET, algorithm="HS256")),
    ]


def with_event_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each stream's events described as OpenAPI 3.1 tools read a text/event-stream schema:
    one object per event, whose data is the JSON the document names in x-event-data."""
    document = copy.deepcopy(document)
    for item in document["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for answer in operation.get("responses", {}).values():
                media = answer.get("content", {}).get(SSE)
                if media is not None and "x-event-data" in media:
                    media["schema"] = {
                        "type": "object",
                        "required": ["data"],
                        "properties": {
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": media["x-event-data"],
                            },
                            "id": {"type": "string"},
                            "event": {"type": "string"},
                        },
                    }
    return document


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module, with an agent the document's example id names, so reads find it."""
    proc = start_child(tmp_path_factory.mktemp("fuzz"), streams={"heartbeat": "100ms"})
    try:
        headers = {"Authorization": f"Bearer {make_token('alice')}"}
        answer = requests.post(f"{proc.url}/api/agents/run-42/logs", json=["one", "two"], headers=headers, timeout=10)
        assert answer.status_code == 200
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.terminate()


def load_schema(proc: ServerProcess) -> Any:
    """The server's own document, as served, with stream events described for the validator."""
    document = requests.get(f"{proc.url}/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(with_event_schemas(document))
    schema.config.max_stream_events = 1
    return schema


def has_inputs(operation: Any) -> bool:
    """True if the operation takes anything a negative example could break."""
    parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in parts)


class Fuzzer:
    """Runs examples of each operation and keeps count of answers and of distinct failures."""

    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        self.schema = load_schema(proc)
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.failures: dict[str, str] = {}

    def run(self, mode: GenerationMode, token: st.SearchStrategy[str], *, secured_must_refuse: bool) -> None:
        """Every operation, in `mode`, each example sent with a token drawn from `token`."""
        for result in self.schema.get_all_operations():
            operation = result.ok()
            if mode is GenerationMode.NEGATIVE and not has_inputs(operation):
                continue
            # Health, the document and sign-out need no token ([]); /metrics and sign-in take one optionally ({}).
            security = operation.definition.raw.get("security", self.schema.raw_schema["security"])
            secured = bool(security) and {} not in security
            self._run_operation(operation, mode, token, secured_must_refuse and secured)

    def _run_operation(
        self, operation: Any, mode: GenerationMode, token: st.SearchStrategy[str], must_refuse: bool
    ) -> None:
        label = f"{mode.value} {operation.label}"
        streams = SSE in json.dumps(operation.definition.raw["responses"])
        timeout = STREAM_READ_SECONDS if streams else ANSWER_SECONDS

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not RANDOM,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
        )
        @given(case=operation.as_strategy(generation_mode=mode), bearer=token)
        def example(case: Any, bearer: str) -> None:
            headers = {"Authorization": f"Bearer {bearer}"}
            self.requests += 1
            try:
                response = case.call(base_url=self.proc.url, headers=headers, timeout=timeout)
            except requests.exceptions.ReadTimeout:
                if not streams:
                    raise
                # The stream's headers came later than the short read allows (a busy machine): read it again.
                response = case.call(base_url=self.proc.url, headers=headers, timeout=ANSWER_SECONDS / 6)
            self.statuses[response.status_code] += 1
            case.validate_response(
                response, checks=CHECKS, headers=headers, transport_kwargs={"base_url": self.proc.url}
            )
            if must_refuse:
                assert response.status_code == 401, f"{operation.label} answered {response.status_code} to a bad token"

        try:
            example()
        except (FailureGroup, AssertionError) as exc:
            self.failures[label] = str(exc)[:3000]


def assert_still_serving(proc: ServerProcess) -> None:
    """The process is alive and answers health, ingest and history."""
    assert proc.process.poll() is None, "the server died while being fuzzed"
    assert requests.get(f"{proc.url}/healthz", timeout=5).status_code == 200
    headers = {"Authorization": f"Bearer {make_token('carol')}"}
    path = f"{proc.url}/api/agents/after-fuzz-{uuid.uuid4().hex[:8]}/logs"
    posted = requests.post(path, json=["still here"], headers=headers, timeout=5)
    assert posted.status_code == 200, posted.text
    history = requests.get(path, headers=headers, timeout=5).json()
    assert [line["message"] for line in history["lines"]] == ["still here"]


def test_fuzzed_requests_with_a_valid_token_get_documented_answers_and_no_server_error(fuzzed: ServerProcess) -> None:
    fuzzer = Fuzzer(fuzzed)
    valid = st.just(make_token("alice"))
    fuzzer.run(GenerationMode.POSITIVE, valid, secured_must_refuse=False)
    fuzzer.run(GenerationMode.NEGATIVE, valid, secured_must_refuse=False)
    record_figures(
        "fuzz",
        {
            "valid_token_requests": fuzzer.requests,
            "valid_token_statuses": dict(sorted(fuzzer.statuses.items())),
            "valid_token_failures": len(fuzzer.failures),
            "examples_per_operation": EXAMPLES,
        },
    )
    assert not fuzzer.failures, "\n\n".join(f"== {label}\n{text}" for label, text in fuzzer.failures.items())
    assert fuzzer.statuses[500] == 0 and fuzzer.requests > 0
    assert_still_serving(fuzzed)


def test_fuzzed_requests_with_invalid_tokens_are_refused_with_401(fuzzed: ServerProcess) -> None:
    fuzzer = Fuzzer(fuzzed)
    tokens = [token for _, token in bad_tokens()]
    fuzzer.run(GenerationMode.POSITIVE, st.sampled_from(tokens), secured_must_refuse=True)
    record_figures(
        "fuzz",
        {
            "invalid_token_requests": fuzzer.requests,
            "invalid_token_statuses": dict(sorted(fuzzer.statuses.items())),
            "invalid_token_failures": len(fuzzer.failures),
            "invalid_token_kinds": [kind for kind, _ in bad_tokens()],
        },
    )
    assert not fuzzer.failures, "\n\n".join(f"== {label}\n{text}" for label, text in fuzzer.failures.items())
    assert fuzzer.statuses[401] > 0
    assert_still_serving(fuzzed)


async def test_sign_in_with_a_header_refuses_a_malformed_body(server: RunningServer) -> None:
    async with server.client("alice") as alice:
        answer = await alice.post("/api/session", content=b"\x00", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_json"


async def test_stream_resume_point_that_is_empty_or_not_ascii_decimal_is_400(server: RunningServer) -> None:
    statuses = []
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/resumed/logs", json=["one"])).status_code == 200
        for params, extra in (
            ({"after": ""}, {}),
            ({"after": "\u00b2"}, {}),
            ({}, {"Last-Event-ID": "\u00b2".encode()}),
            ({"after": "1" * 5000}, {}),
        ):
            async with alice.stream("GET", "/api/agents/resumed/logs/stream", params=params, headers=extra) as answer:
                statuses.append(answer.status_code)
    assert statuses == [400, 400, 400, 400]


# Requests the long, exploring fuzz runs found accepted although the document forbids them; each is refused now.
FOUND_BY_LONG_RUNS = [
    ("POST", "/api/agents", {"id": None, "name": None}),
    ("POST", "/api/agents/found/logs", {"msg": "-", "levelname": -1.1754943508222875e-38}),
    ("POST", "/api/agents/found/logs", {"message": "x", "level": 25.5}),
    ("POST", "/api/stream-tickets", {"agent": "found", "also": []}),
]


@pytest.mark.parametrize(("method", "path", "body"), FOUND_BY_LONG_RUNS)
async def test_what_long_fuzz_runs_found_is_refused(server: RunningServer, method: str, path: str, body: Any) -> None:
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents", json={"id": "found"})).status_code == 201
        answer = await alice.request(method, path, json=body)
        assert answer.status_code == 400, answer.text
        assert [a["id"] for a in (await alice.get("/api/agents")).json()["agents"]] == ["found"]
        assert (await alice.get("/api/agents/found")).json()["line_count"] == 0


async def test_a_malformed_after_is_refused_even_beside_a_last_event_id(server: RunningServer) -> None:
    # Found by the long fuzz run: Last-Event-ID wins over ?after=, so ?after=x went unchecked.
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/resumed-twice/logs", json=["one"])).status_code == 200
        async with alice.stream(
            "GET", "/api/agents/resumed-twice/logs/stream", params={"after": "x"}, headers={"Last-Event-ID": "0"}
        ) as answer:
            status = answer.status_code
    assert status == 400


def test_server_logged_no_traceback_while_fuzzed(fuzzed: ServerProcess) -> None:
    # Last in the module: it stops the server the other tests share.
    assert_still_serving(fuzzed)
    assert fuzzed.terminate() == 0
    assert "Traceback" not in fuzzed.stderr, fuzzed.stderr[-4000:]
