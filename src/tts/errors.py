"""Typed worker errors, each carrying the gRPC status code it maps to (mapped in one place:
the servicer's error boundary)."""

from __future__ import annotations

from typing import ClassVar

import grpc


class WorkerError(Exception):
    """Base of every error a worker reports to a client."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL


class InvalidRequest(WorkerError):
    """Malformed ids, empty or oversized text, bad options, out-of-order chunks."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFound(WorkerError):
    """A model id not in the catalog, or a model file that does not exist."""

    status = grpc.StatusCode.NOT_FOUND


class SessionNotFound(WorkerError):
    """A session id this worker does not hold."""

    status = grpc.StatusCode.NOT_FOUND


class SessionExists(WorkerError):
    """StartSession with an id already open on this worker."""

    status = grpc.StatusCode.ALREADY_EXISTS


class SessionBusy(WorkerError):
    """A second Synthesize stream for a session that is still streaming."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class ModelInUse(WorkerError):
    """UnloadModel on a model that sessions still use."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class ModelPinned(WorkerError):
    """UnloadModel on the worker's pinned default model."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Overloaded(WorkerError):
    """More sessions than max_sessions, or than max_sessions_per_credential for one caller."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(WorkerError):
    """A call without valid credentials (normally refused by the auth interceptor first)."""

    status = grpc.StatusCode.UNAUTHENTICATED


class Draining(WorkerError):
    """New work while the worker drains (SIGTERM), or a stream cut when the drain ends."""

    status = grpc.StatusCode.UNAVAILABLE


class SynthesisFailed(WorkerError):
    """The adapter raised while loading or synthesizing."""

    status = grpc.StatusCode.INTERNAL
