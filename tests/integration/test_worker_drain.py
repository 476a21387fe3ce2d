"""SIGTERM drains a real worker: deregistered at once, new work refused, running streams
finish (or are cut after drain_s), exit 0; a second signal stops it at once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from tests.worker_process import WorkerProcess, free_port
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.registry import RegistryKeys
from voicefleet.rpc.tts_client import PAUSE, RESUME, TTSClient

TOKEN = "drain-test-token-" + "d" * 20
# About 6 s of mock speech: the stream outlives the moment SIGTERM arrives.
LONG_REPLY = " ".join(["This reply keeps speaking for a few seconds."] * 2)


def draining_worker(
    start_worker: Callable[..., WorkerProcess], redis_url: str, keys: RegistryKeys, **extra: Any
) -> WorkerProcess:
    return start_worker(
        models=[{"id": "mock", "adapter": "mock"}],
        default_model="mock",
        auth={"token": TOKEN},
        registry={
            "redis_url": redis_url,
            "key_prefix": keys.prefix,
            "heartbeat_s": 0.3,
            "record_ttl_s": 3.0,
        },
        **extra,
    )


async def wait_registered(redis: Redis, keys: RegistryKeys, worker: WorkerProcess) -> None:
    async with asyncio.timeout(5):
        while not await redis.exists(keys.worker(worker.name)):
            await asyncio.sleep(0.05)


async def wait_exit(worker: WorkerProcess, within_s: float) -> int:
    assert worker.proc is not None
    deadline = time.monotonic() + within_s
    while worker.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    code = worker.proc.poll()
    assert code is not None, f"worker still running {within_s} s later:\n{worker.log()}"
    return code


async def test_sigterm_deregisters_refuses_new_work_and_lets_the_stream_finish(
    start_worker: Callable[..., WorkerProcess], redis_url: str, redis: Redis
) -> None:
    keys = RegistryKeys(f"drain{free_port()}")
    worker = draining_worker(start_worker, redis_url, keys, drain_s=20)
    await wait_registered(redis, keys, worker)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel)
    assert worker.proc is not None
    async with TTSClient(worker.address, token=TOKEN) as client:
        await client.start_session("running")
        await client.start_session("idle")
        frames = aiter(client.synthesize("running", [LONG_REPLY]))
        received = [await anext(frames)]

        worker.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while await redis.exists(keys.worker(worker.name)):
            assert time.monotonic() - signalled < 2, "record still in Redis"
            await asyncio.sleep(0.01)
        assert time.monotonic() - signalled <= 0.5
        assert worker.name.encode() not in await redis.smembers(keys.index)
        leave = None
        async with asyncio.timeout(2):
            while leave is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None and json.loads(message["data"])["event"] == "leave":
                    leave = json.loads(message["data"])
        assert leave["name"] == worker.name

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.start_session("late")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "worker draining" in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _frame in client.synthesize("idle", ["Too late."]):
                pass
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "worker draining" in (refused.value.details() or "")
        health = health_pb2_grpc.HealthStub(client.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

        # The running stream is still controllable, and completes with its final frame.
        assert (await client.control("running", PAUSE)).state == tts_pb2.SESSION_STATE_PAUSED
        await client.control("running", RESUME)
        received += [frame async for frame in frames]
        assert received[-1].final and len(received) > 100
        assert [f.sequence for f in received] == list(range(len(received)))
    assert await wait_exit(worker, 10) == 0
    await pubsub.aclose()


async def test_streams_still_running_after_drain_s_are_cut_with_unavailable(
    start_worker: Callable[..., WorkerProcess], redis_url: str, redis: Redis
) -> None:
    keys = RegistryKeys(f"drain{free_port()}")
    worker = draining_worker(start_worker, redis_url, keys, drain_s=0.5)
    assert worker.proc is not None
    async with TTSClient(worker.address, token=TOKEN) as client:
        await client.start_session("stuck")
        await client.control("stuck", PAUSE)  # held: it can never finish by itself
        call = client.synthesize("stuck", [LONG_REPLY])
        reading = asyncio.ensure_future(call.read())
        await asyncio.sleep(0.3)
        worker.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async with asyncio.timeout(5):
                await reading
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "worker draining" in (cut.value.details() or "")
        assert "drain_s=0.5" in (cut.value.details() or "")
        assert time.monotonic() - signalled >= 0.4
    assert await wait_exit(worker, 5) == 0


async def test_a_second_signal_stops_the_drain_at_once(
    start_worker: Callable[..., WorkerProcess], redis_url: str, redis: Redis
) -> None:
    keys = RegistryKeys(f"drain{free_port()}")
    worker = draining_worker(start_worker, redis_url, keys, drain_s=60)
    await wait_registered(redis, keys, worker)
    assert worker.proc is not None
    async with TTSClient(worker.address, token=TOKEN) as client:
        await client.start_session("stuck")
        await client.control("stuck", PAUSE)
        call = client.synthesize("stuck", [LONG_REPLY])
        reading = asyncio.ensure_future(call.read())
        await asyncio.sleep(0.3)
        worker.proc.send_signal(signal.SIGTERM)
        while await redis.exists(keys.worker(worker.name)):
            await asyncio.sleep(0.01)
        worker.proc.send_signal(signal.SIGINT)
        assert await wait_exit(worker, 3) == 0
        with pytest.raises(grpc.aio.AioRpcError):
            async with asyncio.timeout(5):
                await reading
