"""API fuzzing: schemathesis drives every operation of the server's own /api/openapi.json against a real server.

All four of schemathesis' phases run: the document's examples, the coverage phase (every boundary and every kind of
wrong value the schema implies, methods the path does not document, malformed content types), fuzzing with
schema-valid and schema-violating requests, and stateful sequences that follow the document's links (create an
agent, then read, ingest into, stream, patch and delete it). No answer is a 5xx; every answer matches its
documented status, headers and schema; a schema-violating request is refused; a method a path does not answer is a
405 with Allow; an operation that needs a token refuses one without it and every invalid one; a deleted agent stays
gone; and the server keeps serving afterwards.

SENTRA_FUZZ_EXAMPLES sets the fuzzing examples per operation and the stateful scenarios (short default for CI);
streams get a fifth of them, since every streaming answer is read for a while before the fuzzer moves on.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
import requests
import schemathesis
from conftest import SECRET, RunningServer, make_token
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from processes import ServerProcess
from schemathesis import GenerationMode
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import UseAfterFree
from schemathesis.specs.openapi import checks as openapi_checks

from sentra.api.openapi import openapi_document

from .support import knob, record_figures

pytestmark = pytest.mark.slow  # schemathesis fuzzing a server child

EXAMPLES = int(knob("SENTRA_FUZZ_EXAMPLES", 20))
STREAM_EXAMPLES = max(2, EXAMPLES // 5)
# Stateful scenarios, the most steps in one, and the most runs of them (a run may stop early: see the test).
SCENARIOS = EXAMPLES
STEPS = 8
RUNS = 5
# The same examples every run, so a red test run means a change broke something; SENTRA_FUZZ_RANDOM=1 explores.
RANDOM = bool(knob("SENTRA_FUZZ_RANDOM", 0))
SSE = "text/event-stream"
# How long one streaming answer is read before the fuzzer moves on (a live stream never ends by itself); other
# answers get a generous timeout, since a slow answer is not what this suite measures.
STREAM_READ_SECONDS = 0.5
ANSWER_SECONDS = 30.0
STREAMS = ["streamLogs", "streamLogsSeed001", "streamManyAgents", "agentEvents"]

# Left out of every phase: positive_data_acceptance, which expects every schema-valid body to be accepted, while the
# schema cannot say everything Sentra checks (a level must be >= 0, a ts after 1970, a line under
# limits.max_line_size); the hypothesis suite of the ingest parser covers those rules instead.
LEFT_OUT = {"positive_data_acceptance": {"enabled": False}}
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
ALICE = make_token("alice")
# What the phases saw (statuses, operations that failed), for docs/reliability.md.
SEEN: Counter[int] = Counter()
FAILED: set[str] = set()


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
    proc = ServerProcess.in_folder(tmp_path_factory.mktemp("fuzz"), streams={"heartbeat": "100ms"}).start()
    try:
        headers = {"Authorization": f"Bearer {make_token('alice')}"}
        answer = requests.post(f"{proc.url}/api/agents/run-42/logs", json=["one", "two"], headers=headers, timeout=10)
        assert answer.status_code == 200
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.terminate()
        record_figures(
            "fuzz",
            {
                "valid_token_requests": sum(SEEN.values()),
                "valid_token_statuses": dict(sorted(SEEN.items())),
                "valid_token_failures": len(FAILED),
                "examples_per_operation": EXAMPLES,
            },
        )


def load_schema(proc: ServerProcess) -> Any:
    """The server's own document, as served, with stream events described for the validator."""
    document = requests.get(f"{proc.url}/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(with_event_schemas(document))
    schema.config.max_stream_events = 1
    return schema


def phases_config(token: str, base_url: str | None = None) -> schemathesis.Config:
    """Every phase with alice's `token`: the examples per operation, fewer for streams, each of whose answers is
    read until its first event (or for STREAM_READ_SECONDS)."""
    generation = {"max-examples": EXAMPLES, "mode": "all", "deterministic": not RANDOM, "database": "none"}
    config: dict[str, Any] = {
        "auth": {"openapi": {"bearer": {"bearer": token}}},
        "request-timeout": ANSWER_SECONDS,
        "max-stream-events": 1,
        "suppress-health-check": ["all"],
        "generation": generation,
        "checks": LEFT_OUT,
        "phases": {"stateful": {"max-steps": STEPS}},
        "operations": [
            {
                "include-operation-id": STREAMS,
                "request-timeout": STREAM_READ_SECONDS,
                # A stream whose headers come later than that (a busy machine) is asked again, after a second.
                "request-retries": 2,
                "generation": {**generation, "max-examples": STREAM_EXAMPLES},
            }
        ],
    }
    if base_url is not None:
        config["base-url"] = base_url
    return schemathesis.Config.from_dict(config)


# An NDJSON body is text, one JSON value per line: sent as schemathesis sends text/plain.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
# An OTLP protobuf body is bytes: sent as schemathesis sends application/octet-stream.
schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")

# The document the server serves (tests/test_openapi.py holds them equal), loaded when pytest collects this module,
# so each operation is a test of its own; the requests go to the `fuzzed` server.
schema = schemathesis.openapi.from_dict(with_event_schemas(openapi_document()), config=phases_config(ALICE))


@schema.parametrize()
def test_every_phase_gets_documented_answers_and_no_server_error(
    case: schemathesis.Case, fuzzed: ServerProcess
) -> None:
    try:
        response = case.call_and_validate(base_url=fuzzed.url)
    except FailureGroup:
        FAILED.add(case.operation.label)
        raise
    SEEN[response.status_code] += 1


def run_sequences(machine: Any) -> tuple[list[FailureGroup], Counter[str]]:
    """Run the document's state machine (again, up to RUNS times, when a run stops early; see below): the checks
    that failed, and the steps of each operation."""
    found: list[FailureGroup] = []
    steps: Counter[str] = Counter()

    class Sequences(machine):
        """The state machine, keeping each failed check and counting the steps."""

        def setup(self) -> None:
            self.history: list[tuple[str, str, int]] = []  # (method, path, status) of this scenario's steps

        def validate_response(self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any) -> None:
            steps[case.operation.label] += 1
            self.history.append((case.method.upper(), unquote(case.formatted_path), response.status_code))
            try:
                super().validate_response(response, case, *args, **kwargs)
            except FailureGroup as failure:
                if all(self.recreated_by_ingest(error) for error in failure.exceptions):
                    return
                found.append(failure)
                raise

        def recreated_by_ingest(self, error: Exception) -> bool:
            """True for a "deleted resource still available" that a line created anew after the DELETE: ingest
            creates its agent (seed 000's contract), which schemathesis does not count as re-creating it, since
            it only knows a POST to the deleted path or above it."""
            if not isinstance(error, UseAfterFree):
                return False
            deleted = unquote(error.free.partition(" ")[2])
            deletes = [i for i, (method, path, _) in enumerate(self.history) if (method, path) == ("DELETE", deleted)]
            return bool(deletes) and ("POST", f"{deleted}/logs", 200) in self.history[deletes[-1] :]

    for _ in range(RUNS):
        try:
            Sequences.run(
                settings=settings(
                    max_examples=SCENARIOS,
                    stateful_step_count=STEPS,
                    deadline=None,
                    database=None,
                    derandomize=not RANDOM,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.generate],
                )
            )
            break
        except Flaky:
            # The server keeps what earlier scenarios did (an id taken, an agent finished or deleted), so a
            # scenario replayed can draw differently and the run stops. Schemathesis' own runner reads that as no
            # failure and runs the suite again, and so does this test, unless a check failed on the way.
            continue
    return found, steps


def test_stateful_sequences_follow_the_links_and_get_documented_answers(fuzzed: ServerProcess) -> None:
    document = with_event_schemas(openapi_document())
    machine = schemathesis.openapi.from_dict(document, config=phases_config(ALICE, fuzzed.url)).as_state_machine()
    found, steps = run_sequences(machine)
    assert not found, "\n\n".join(str(failure) for failure in found)
    record_figures("fuzz", {"stateful_steps": dict(sorted(steps.items()))})
    assert sum(steps.values()) >= SCENARIOS, steps
    assert steps["POST /api/agents"] > 0 and len(steps) > 5, steps


class Fuzzer:
    """Runs schema-valid examples of each operation with tokens drawn from a strategy, and keeps count of answers
    and of distinct failures."""

    def __init__(self, proc: ServerProcess) -> None:
        self.proc = proc
        self.schema = load_schema(proc)
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.failures: dict[str, str] = {}

    def run(self, token: st.SearchStrategy[str]) -> None:
        """Every operation, each example sent with a token drawn from `token`; one that needs a token must refuse."""
        for result in self.schema.get_all_operations():
            operation = result.ok()
            # Health, the document and sign-out need no token ([]); /metrics and sign-in take one optionally ({}).
            security = operation.definition.raw.get("security", self.schema.raw_schema["security"])
            self._run_operation(operation, token, bool(security) and {} not in security)

    def _run_operation(self, operation: Any, token: st.SearchStrategy[str], must_refuse: bool) -> None:
        label = operation.label
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
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), bearer=token)
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


def test_fuzzed_requests_with_invalid_tokens_are_refused_with_401(fuzzed: ServerProcess) -> None:
    fuzzer = Fuzzer(fuzzed)
    tokens = [token for _, token in bad_tokens()]
    fuzzer.run(st.sampled_from(tokens))
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


async def test_a_patch_without_a_body_is_refused(server: RunningServer) -> None:
    # Found by the coverage phase: the document requires PATCH's body, and one without any was a 200 changing nothing.
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents", json={"id": "bodiless"})).status_code == 201
        answer = await alice.patch("/api/agents/bodiless")
        emptied = await alice.patch("/api/agents/bodiless", json={})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"] == "PATCH needs a JSON object body: status, reason, name and/or labels"
    assert emptied.status_code == 200 and emptied.json()["status"] == "running"


async def test_an_alias_beside_its_key_is_kept_in_fields_as_sent(server: RunningServer) -> None:
    # Found by the coverage phase: the document held log_source to source's rules even beside source, where Sentra
    # keeps it as one more field; the document now says what Sentra does.
    line = {"message": "x", "source": "worker", "log_source": {"long": "y" * 300}, "msg": 5}
    async with server.client("alice") as alice:
        assert (await alice.post("/api/agents/aliased/logs", json=line)).status_code == 200
        alone = await alice.post("/api/agents/aliased/logs", json={"msg": "z", "log_source": "y" * 300})
        (stored,) = (await alice.get("/api/agents/aliased/logs")).json()["lines"]
    assert (stored["message"], stored["source"]) == ("x", "worker")
    assert stored["fields"] == {"log_source": {"long": "y" * 300}, "msg": 5}
    assert alone.status_code == 400 and "'source' is longer than 256 characters" in alone.json()["error"]["message"]


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
