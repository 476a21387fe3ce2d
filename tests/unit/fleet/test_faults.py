"""Whose fault a failed worker call is: the table every fleet caller relies on."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from voicefleet.fleet.faults import CLIENT_LOST_STATUS, Fault, classify, describe, lost_status

S = grpc.StatusCode


def error(code: grpc.StatusCode, details: str = "") -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details=details)


@pytest.mark.parametrize(
    ("code", "fault"),
    [
        (S.INVALID_ARGUMENT, Fault.REQUEST),
        (S.FAILED_PRECONDITION, Fault.REQUEST),
        (S.RESOURCE_EXHAUSTED, Fault.SKIP),
        (S.UNAUTHENTICATED, Fault.SKIP),
        (S.UNAVAILABLE, Fault.WORKER),
        (S.DEADLINE_EXCEEDED, Fault.WORKER),
        (S.INTERNAL, Fault.WORKER),
        (S.UNKNOWN, Fault.WORKER),
    ],
)
def test_codes_map_to_faults(code: grpc.StatusCode, fault: Fault) -> None:
    assert classify(error(code, "whatever the worker said")) is fault


def test_not_found_is_the_request_unless_we_opened_that_session() -> None:
    assert classify(error(S.NOT_FOUND, "unknown model")) is Fault.REQUEST
    assert classify(error(S.NOT_FOUND, "no session"), session_known=True) is Fault.SESSION_GONE


def test_a_status_the_client_library_lost_skips_the_worker_without_a_cool_down() -> None:
    # grpc/grpc#36066: a write onto a stream the worker already ended becomes this INTERNAL.
    lost = error(S.INTERNAL, CLIENT_LOST_STATUS)
    assert lost_status(lost)
    assert classify(lost) is Fault.SKIP
    # Any other INTERNAL is the worker's own failure and still cools it down.
    assert not lost_status(error(S.INTERNAL, "Exception calling application: boom"))
    assert classify(error(S.INTERNAL, "Internal error from Core, again")) is Fault.WORKER
    assert not lost_status(RuntimeError(CLIENT_LOST_STATUS))


def test_non_grpc_errors_are_the_workers_and_are_described_readably() -> None:
    assert classify(TimeoutError()) is Fault.WORKER
    assert classify(ConnectionResetError("peer")) is Fault.WORKER
    assert describe(TimeoutError()) == "timed out"
    assert describe(error(S.UNAVAILABLE, "gone")) == "UNAVAILABLE: gone"
    assert describe(ValueError("x")) == "ValueError: x"
