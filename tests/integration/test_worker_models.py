"""Model management, capabilities, health and reflection over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.worker_process import WorkerProcess
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import TTSClient

MOCKS = [{"id": name, "adapter": "mock"} for name in ("m1", "m2", "m3")]


async def resident(client: TTSClient) -> set[str]:
    listing = await client.stub.ListModels(tts_pb2.ListModelsRequest())
    return {m.model_id for m in listing.models if m.resident}


async def test_load_unload_ttl_and_lru_over_grpc(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(
        models=MOCKS,
        default_model="m1",
        model_manager={
            "ttl_s": 0.4,
            "resident_cap": 2,
            "evict_interval_s": 0.1,
            "pin_default": True,
        },
    )
    async with TTSClient(worker.address) as client:
        assert await resident(client) == {"m1"}
        replies = await asyncio.gather(
            *(client.stub.LoadModel(tts_pb2.LoadModelRequest(model_id="m2")) for _ in range(4))
        )
        assert sum(r.loaded_now for r in replies) == 1, "concurrent loads load once"
        assert all(r.model.resident for r in replies)
        await client.start_session("s-m2", model_id="m2")
        await client.stub.LoadModel(tts_pb2.LoadModelRequest(model_id="m3"))
        # Cap 2, m1 pinned, m2 in use: m3 exceeds the cap rather than evict a model in use.
        assert await resident(client) == {"m1", "m2", "m3"}
        await asyncio.sleep(0.8)
        assert await resident(client) == {"m1", "m2"}, "idle m3 evicted after its TTL"
        try:
            await client.stub.UnloadModel(tts_pb2.UnloadModelRequest(model_id="m2"))
            raise AssertionError("unloading a model in use must fail")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        await client.end_session("s-m2")
        reply = await client.stub.UnloadModel(tts_pb2.UnloadModelRequest(model_id="m2"))
        assert reply.unloaded_now and not reply.model.resident
        assert await resident(client) == {"m1"}
        try:
            await client.stub.LoadModel(tts_pb2.LoadModelRequest(model_id="m9"))
            raise AssertionError("unknown model must fail")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_capabilities_health_and_reflection(piper_worker: WorkerProcess) -> None:
    async with grpc.aio.insecure_channel(piper_worker.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "voicefleet.tts.v1.TTS"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> object:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        services = set()
        async for reply in reflection.ServerReflectionInfo(ask()):
            services |= {s.name for s in reply.list_services_response.service}
        assert "voicefleet.tts.v1.TTS" in services and "grpc.health.v1.Health" in services
    async with TTSClient(piper_worker.address) as client:
        caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest())
        assert caps.capabilities.streaming and caps.capabilities.cpu_ok
        assert "en-US" in caps.capabilities.languages
        assert "en_US-joe-medium" in caps.resident_models
        assert set(caps.available_models) == {"en_US-joe-medium", "mock"}
        listing = await client.stub.ListModels(tts_pb2.ListModelsRequest())
        joe = next(m for m in listing.models if m.model_id == "en_US-joe-medium")
        assert joe.native_sample_rate == 22_050 and joe.load_ms > 0
        assert listing.default_model_id == "en_US-joe-medium"
