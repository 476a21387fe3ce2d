"""A bad registry record and a real orchestrator: it starts, reports the record in /readyz and
/metrics, and routes to a worker that registers afterwards."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from redis.asyncio import Redis

from tests.integration.conftest import Stack, open_session
from tests.worker_process import OrchestratorProcess
from voicefleet.orchestrator.protocol import AudioEnd
from voicefleet.rpc.registry import RegistryKeys


def readyz(orchestrator: OrchestratorProcess) -> tuple[int, dict[str, Any]]:
    status, body = orchestrator.get("/readyz")
    return status, json.loads(body)


async def until_ready(orchestrator: OrchestratorProcess, within_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status, ready = readyz(orchestrator)
        if status == 200:
            return ready
        await asyncio.sleep(0.1)
    raise TimeoutError(f"not ready within {within_s} s: {ready}")


async def test_an_orchestrator_started_beside_a_bad_record_routes_to_a_later_worker(
    stack: Stack, redis_url: str
) -> None:
    keys = RegistryKeys(stack.prefix)
    redis = Redis.from_url(redis_url)
    try:
        await redis.set(keys.worker("evil"), "{not json")
        await redis.sadd(keys.index, "evil")

        orchestrator = stack.orchestrator(require_ready=False)  # waits for /healthz only
        status, ready = readyz(orchestrator)
        assert status == 503 and ready["workers"] == [], ready  # no worker yet, and it says so
        assert ready["registry"] == "ok", ready
        assert isinstance(ready["registry_read_s_ago"], float), ready
        [skipped] = ready["registry_skipped"]
        assert skipped["name"] == "evil" and skipped["reason"] == "not_json", ready
        assert skipped["detail"].startswith("not JSON"), ready

        worker = stack.worker()
        ready = await until_ready(orchestrator, 15)
        assert ready["workers"] == [worker.name], ready
        assert [entry["name"] for entry in ready["registry_skipped"]] == ["evil"]

        session, events = await open_session(orchestrator.ws_url)
        session.mark_input_start()
        await session.send_text("Routed past a broken record.", "say")
        assert await session.wait_reply(30), session.failure
        await session.close()
        assert any(isinstance(e, AudioEnd) for e in events)
        assert len(session.result.frames) > 10

        _status, metrics = orchestrator.get("/metrics")
        assert 'voicefleet_registry_records_skipped_total{reason="not_json"} 1.0' in metrics
        assert 'voicefleet_registry_records_skipped_total{reason="invalid"} 0.0' in metrics
        assert orchestrator.log().count("skipping the registry record") == 1

        await redis.delete(keys.worker("evil"))
        deadline = time.monotonic() + 5
        while readyz(orchestrator)[1]["registry_skipped"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        status, ready = readyz(orchestrator)
        assert status == 200 and ready["registry_skipped"] == [] and ready["registry"] == "ok"
    finally:
        await redis.delete(keys.worker("evil"))
        await redis.srem(keys.index, "evil")
        await redis.aclose()
