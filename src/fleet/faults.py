"""Whose fault a failed worker call is: decided here, once, for every caller of the fleet.

A request the worker rejects (bad text, unknown model or voice, a precondition) is the
request's fault: it fails that reply only, and the worker stays in rotation. A worker that is
full (or refuses our credentials) is skipped for this reply without a cool-down. Only
transport and worker faults (the worker is unreachable, timed out, crashed, or stopped
answering) count against the worker.

One INTERNAL is not the worker's: a grpc.aio client that is still writing a request stream
when the worker has already ended it with a status replaces that status with its own
INTERNAL "Internal error from Core" (grpc/grpc#36066, grpcio <= 1.85). The worker's real
answer (often a refusal of the request) is lost, so the call is skipped, not held against it.
"""

from __future__ import annotations

import enum

import grpc


class Fault(enum.Enum):
    """What a failed call says about the worker."""

    REQUEST = "request"  # the worker refused what we sent: fail the reply, keep the worker
    SKIP = "skip"  # the worker will not take it (full, or refuses our credentials): try another
    SESSION_GONE = "session_gone"  # our worker session no longer exists there: reopen it
    WORKER = "worker"  # the worker is broken or unreachable: fail over and cool it down


_REQUEST_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
_SKIP_CODES = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
# What grpc.aio reports for a write onto a stream the peer already closed (grpc/grpc#36066).
CLIENT_LOST_STATUS = "Internal error from Core"


def lost_status(error: BaseException) -> bool:
    """The client library dropped the worker's status (see the module docstring)."""
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() is grpc.StatusCode.INTERNAL
        and (error.details() or "") == CLIENT_LOST_STATUS
    )


def classify(error: BaseException, *, session_known: bool = False) -> Fault:
    """The fault behind an exception raised by a worker call.

    `session_known`: the call named a worker session this client had opened, so NOT_FOUND
    means that session is gone (reaped, or the worker restarted), not a bad model id.
    """
    if isinstance(error, grpc.aio.AioRpcError):
        code = error.code()
        if code in _REQUEST_CODES:
            return Fault.REQUEST
        if code in _SKIP_CODES:
            return Fault.SKIP
        if code is grpc.StatusCode.NOT_FOUND:
            return Fault.SESSION_GONE if session_known else Fault.REQUEST
        if lost_status(error):
            return Fault.SKIP
    return Fault.WORKER


def describe(error: BaseException) -> str:
    """A readable one-line reason."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, TimeoutError):
        return str(error) or "timed out"
    return f"{type(error).__name__}: {error}"
