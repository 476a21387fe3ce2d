"""The operator's actions on a running fleet (`voicefleet fleet`): read the registry, ask a
worker to drain, load or unload a model on workers.

Drain goes through the registry, not an RPC: the operator leaves a DrainRequest under
`{prefix}:drain:{name}` naming the worker's run (its `started_at`), the worker takes it on its
next heartbeat and drains exactly as on SIGTERM (docs/operations.md, "Operator CLI").
Every failure is an OperatorError whose message is the one line the operator reads.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from redis.exceptions import RedisError

from voicefleet.fleet.config import RouterConfig
from voicefleet.fleet.status import FleetSnapshot
from voicefleet.rpc.channel import ChannelConfigError, WorkerChannelConfig
from voicefleet.rpc.redis_conn import connect, redacted
from voicefleet.rpc.registry import (
    DrainRequest,
    RegistryKeys,
    WorkerRecord,
    pending_drains,
    read_fleet_report,
    request_drain,
)
from voicefleet.rpc.tts_client import TTSClient

# A request no worker takes (its heartbeat cannot reach Redis) is gone after this long.
DRAIN_REQUEST_TTL_S = 60.0
_POLL_S = 0.1


class OperatorError(Exception):
    """A command that cannot be carried out; the message says why in one line."""


@dataclass(frozen=True)
class WorkerResult:
    """What one worker answered to a model command."""

    worker: str
    ok: bool
    message: str


def describe_rpc_error(error: BaseException) -> str:
    """A worker's refusal or a transport failure as `CODE: details`."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details() or 'no details'}"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return f"{type(error).__name__}: {error}"


class FleetAdmin:
    """One operator session against one registry (and the workers it lists)."""

    def __init__(self, config: RouterConfig, channel: WorkerChannelConfig) -> None:
        self.config = config
        self.channel = channel
        self.keys = RegistryKeys(config.key_prefix)
        self.registry = redacted(config.redis_url)
        self._redis = connect(config.redis_url, config.redis, timeout_s=2.0)

    async def close(self) -> None:
        """Close the Redis connection."""
        await self._redis.aclose()

    def _unreachable(self, error: Exception) -> OperatorError:
        return OperatorError(f"cannot reach the registry at {self.registry}: {error}")

    async def snapshot(self) -> FleetSnapshot:
        """Every record (usable and skipped) and the drain requests not taken yet."""
        try:
            read = await read_fleet_report(self._redis, self.keys)
            drains = await pending_drains(
                self._redis, self.keys, [record.name for record in read.records]
            )
        except (RedisError, OSError) as error:
            raise self._unreachable(error) from None
        return FleetSnapshot(
            self.registry, self.keys.prefix, read.records, read.skipped, frozenset(drains)
        )

    async def worker(self, name: str) -> WorkerRecord:
        """The record of worker `name`; OperatorError naming the known workers otherwise."""
        snapshot = await self.snapshot()
        for record in snapshot.records:
            if record.name == name:
                return record
        for entry in snapshot.skipped:
            if entry.name == name:
                raise OperatorError(
                    f"worker {name!r} has a record nobody can use ({entry.reason.value}: "
                    f"{entry.detail})"
                )
        known = ", ".join(sorted(r.name for r in snapshot.records)) or "none"
        raise OperatorError(
            f"no worker named {name!r} in the registry at {self.registry} "
            f"(prefix {self.keys.prefix}); registered: {known}"
        )

    async def drain(self, name: str, wait_s: float) -> WorkerRecord:
        """Ask worker `name` to drain; with `wait_s` > 0, wait until it has left the registry
        (OperatorError, the request withdrawn, if it does not take it in time)."""
        record = await self.worker(name)
        request = DrainRequest(started_at=record.started_at, by=_operator())
        try:
            await request_drain(self._redis, self.keys, name, request, DRAIN_REQUEST_TTL_S)
            if wait_s > 0:
                await self._wait_drained(name, wait_s)
        except (RedisError, OSError) as error:
            raise self._unreachable(error) from None
        return record

    async def _wait_drained(self, name: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not await self._redis.exists(self.keys.drain(name), self.keys.worker(name)):
                return
            await asyncio.sleep(_POLL_S)
        if await self._redis.delete(self.keys.drain(name)):
            raise OperatorError(
                f"worker {name!r} did not take the drain request within {wait_s:g} s (is its "
                "heartbeat reaching the registry?); request withdrawn. SIGTERM drains it too"
            )
        raise OperatorError(
            f"worker {name!r} took the drain request but was still registered {wait_s:g} s later"
        )

    async def targets(self, model: str, names: Sequence[str]) -> list[WorkerRecord]:
        """The workers a model command goes to: those named, or (no names) every registered
        worker whose catalog has the model."""
        if names:
            return [await self.worker(name) for name in names]
        snapshot = await self.snapshot()
        offering = [r for r in snapshot.records if model in r.available_models]
        if not offering:
            if not snapshot.records:
                raise OperatorError(
                    f"no workers registered in the registry at {self.registry} "
                    f"(prefix {self.keys.prefix})"
                )
            catalog = sorted({m for r in snapshot.records for m in r.available_models})
            raise OperatorError(
                f"no registered worker offers model {model!r} (the fleet offers: "
                f"{', '.join(catalog)})"
            )
        return sorted(offering, key=lambda r: r.name)

    async def change_models(
        self, model: str, workers: Sequence[WorkerRecord], *, load: bool
    ) -> list[WorkerResult]:
        """LoadModel (or UnloadModel) on every worker at once; one result per worker."""
        return list(
            await asyncio.gather(*(self._change_model(model, w, load=load) for w in workers))
        )

    async def _change_model(self, model: str, worker: WorkerRecord, *, load: bool) -> WorkerResult:
        try:
            async with TTSClient(worker.address, config=self.channel) as client:
                if load:
                    began = time.perf_counter()
                    loaded = await client.load_model(model)
                    took_ms = (time.perf_counter() - began) * 1000
                    message = (
                        f"loaded {model} ({took_ms:.0f} ms)"
                        if loaded.loaded_now
                        else f"{model} was already resident"
                    )
                else:
                    unloaded = await client.unload_model(model)
                    message = (
                        f"unloaded {model}"
                        if unloaded.unloaded_now
                        else f"{model} was not resident"
                    )
        except (grpc.aio.AioRpcError, ChannelConfigError, OSError, TimeoutError) as error:
            return WorkerResult(worker.name, False, describe_rpc_error(error))
        return WorkerResult(worker.name, True, message)


def _operator() -> str:
    """Who asked (for the worker's log line): user@host."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return socket.gethostname()
