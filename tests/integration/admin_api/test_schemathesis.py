"""schemathesis against the live API's own OpenAPI description: no generated request gets a 5xx,
and no route but /healthz answers anything but 401 without a valid token. Examples are bounded
to keep the suite fast."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .harness import World, start_world
from .test_access import EXPECTED, PERSON

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[World]:
    w = start_world(tmp_path_factory.mktemp("schemathesis"))
    cid = w.approved()
    w.ok("alice", "POST", f"/disclosures/{cid}/execute")
    try:
        yield w
    finally:
        w.client.close()
        w.server.stop()


def _without_auth(headers: dict | None) -> dict:
    return {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}


def _operations(live: World) -> list:
    schema = schemathesis.openapi.from_url(live.server.url + "/openapi.json",
                                           headers={"Authorization": f"Bearer {live.tokens['carol']}"})
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_in_the_schema(live: World) -> None:
    described = {(op.method.upper(), op.path) for op in _operations(live)}
    # schemathesis leaves out the schema's own URL; the document itself still lists it
    assert described == set(EXPECTED) - {("GET", "/openapi.json")}
    paths = live.ok("carol", "GET", "/openapi.json")["paths"]
    assert {(m.upper(), p) for p, ops in paths.items() for m in ops} == set(EXPECTED)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_no_answer_without_a_token(live: World, mode: GenerationMode) -> None:
    for op in _operations(live):
        _fuzz(live, op, mode)


def _fuzz(live: World, op, mode: GenerationMode) -> None:
    allowed = EXPECTED[(op.method.upper(), op.path)]
    role = sorted(allowed)[0] if allowed else "auditor"
    token = live.tokens[PERSON[role]]

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        case.headers = _without_auth(case.headers)
        anonymous = case.call(base_url=live.server.url)
        if allowed is None:
            assert anonymous.status_code == 200
        else:
            assert anonymous.status_code == 401, (case.method, case.path, anonymous.status_code)
            forged = case.call(base_url=live.server.url,
                               headers={"Authorization": "Bearer hle_0000000000000000_notasecret"})
            assert forged.status_code == 401
        case.call_and_validate(base_url=live.server.url, headers={"Authorization": f"Bearer {token}"},
                               checks=[not_a_server_error])

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or body has no invalid variant to generate
        assert mode is GenerationMode.NEGATIVE, (op.method, op.path)
