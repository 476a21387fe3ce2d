"""A small, seed-stable sample of the fuzz cases (tests/fuzz/, docs/security.md) against a real
orchestrator and a real worker: hostile WebSocket frames and sequences, and hostile worker API
programs with good and bad tokens. bench/fuzz.py runs the same strategies at scale.

Each example must get only documented responses (error codes, status codes, close codes; no
traceback text; no INTERNAL or UNKNOWN) within its bound; afterwards both processes are alive,
logged no traceback, hold no leftover worker session, and a fresh normal session gets audio.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import grpc_cases, ws_cases
from tests.fuzz.driver import Driver
from tests.fuzz.grpc_cases import Call
from tests.fuzz.oracles import leaks_internals
from tests.fuzz.stack import FuzzStack, WorkerLimits, WsLimits
from tests.fuzz.ws_cases import Frame, Plan, _judge, _Seen

WS_LIMITS = WsLimits()
WORKER_LIMITS = WorkerLimits()


def sample(examples: int) -> settings:
    """Derandomized: the same cases on every run and machine."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[FuzzStack]:
    built = FuzzStack(tmp_path_factory.mktemp("fuzz"), redis_url, WS_LIMITS, WORKER_LIMITS)
    try:
        yield built.start()
    finally:
        built.stop()


@pytest.fixture(scope="module")
def driver(stack: FuzzStack) -> Iterator[Driver]:
    built = Driver(stack)
    assert built.canaries() == []
    yield built
    built.close()


@sample(120)
@given(case=ws_cases.single_frame_cases(WS_LIMITS))
def test_single_websocket_frames(driver: Driver, case: list[Frame]) -> None:
    outcome = driver.ws_case(case, "ws.frame")
    assert not driver.stack.dead(), f"crashed: {driver.stack.dead()}"
    assert not outcome.hung, "the case did not complete or close within its bound"
    assert outcome.problem is None, outcome.problem


@sample(60)
@given(case=ws_cases.sequence_cases(WS_LIMITS))
def test_websocket_frame_sequences(driver: Driver, case: list[Frame]) -> None:
    outcome = driver.ws_case(case, "ws.sequence")
    assert not driver.stack.dead(), f"crashed: {driver.stack.dead()}"
    assert not outcome.hung, "the case did not complete or close within its bound"
    assert outcome.problem is None, outcome.problem


@sample(80)
@given(program=grpc_cases.programs(WORKER_LIMITS))
def test_worker_api_programs(driver: Driver, program: list[Call]) -> None:
    outcome = driver.grpc_program(program)
    assert not driver.stack.dead(), f"crashed: {driver.stack.dead()}"
    assert not outcome.hung, "the case did not complete or close within its bound"
    assert outcome.problem is None, outcome.problem


def test_after_the_sample_both_tiers_are_alive_clean_and_serving(driver: Driver) -> None:
    assert driver.stack.dead() == []
    assert driver.worker_settled() is None
    assert driver.canaries() == []
    tracebacks = driver.stack.tracebacks()
    assert not tracebacks, next(iter(tracebacks.values()))[0]


def test_the_oracles_trip() -> None:
    """The judges are not vacuous: a wrong code, a traceback, INTERNAL and a bad token's OK all
    count as problems."""
    assert leaks_internals('Traceback (most recent call last):\n  File "/x.py"')
    expected = Plan([], errors=[frozenset({"bad_json"})])
    assert _judge(expected, _Seen(errors=[{"code": "bad_message"}])) is not None
    assert _judge(expected, _Seen(errors=[{"code": "bad_json"}])) is None
    assert _judge(Plan([], close=1000), _Seen(close=1011)) is not None
    call = Call("StartSession", {"session_id": "a"})
    internal = grpc_cases._judge_status(call, "a", grpc_cases.S.INTERNAL, "boom")
    assert internal is not None and "INTERNAL" in internal
    bad_token = Call("ListModels", {}, auth=None)
    assert grpc_cases._judge_status(bad_token, None, grpc_cases.S.OK, "") is not None
    malformed = grpc_cases._judge_status(call, "a b", grpc_cases.S.NOT_FOUND, "")
    assert malformed is not None
