"""`voicefleet worker`: assemble the servicer, model manager and registrar, and run them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from voicefleet.rpc.generated import tts_pb2, tts_pb2_grpc
from voicefleet.rpc.registry import RegistryKeys, WorkerLoad, WorkerRecord
from voicefleet.tts.config import WorkerConfig
from voicefleet.tts.models import ModelManager
from voicefleet.tts.registration import Registrar
from voicefleet.tts.servicer import TTSServicer
from voicefleet.tts.session import SessionTable
from voicefleet.tts.stats import WorkerStats
from voicefleet.tts.stream import StreamSettings

log = logging.getLogger(__name__)

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TTS"].full_name


class Worker:
    """One TTS worker process: gRPC server, models, sessions, registration."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.port = 0
        self.stats = WorkerStats()
        self.executor = ThreadPoolExecutor(config.synthesis_threads, thread_name_prefix="synth")
        self.models = ModelManager(
            {spec.id: spec for spec in config.models},
            config.default_model,
            self.executor,
            ttl_s=config.model_manager.ttl_s,
            resident_cap=config.model_manager.resident_cap,
            pin_default=config.model_manager.pin_default,
        )
        self.sessions = SessionTable(config.limits.max_sessions)
        self.servicer = TTSServicer(
            config.name,
            self.models,
            self.sessions,
            self.executor,
            StreamSettings(
                max_lead_ms=config.max_lead_ms,
                max_chunk_chars=config.limits.max_chunk_chars,
                max_stream_chars=config.limits.max_stream_chars,
                target_lufs=config.loudness.target_lufs,
                ceiling_dbfs=config.loudness.ceiling_dbfs,
            ),
            self.stats,
        )
        self.health = health_aio.HealthServicer()
        self.server = grpc.aio.server()
        self.registrar: Registrar | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def record(self) -> WorkerRecord:
        """This worker's registry record, as of now."""
        return WorkerRecord(
            name=self.config.name,
            address=self.config.address(self.port),
            capabilities=self.servicer.capabilities(),
            default_model=self.models.default_model_id,
            resident_models=self.models.resident_ids,
            available_models=sorted(self.models.catalog),
            load=WorkerLoad(
                active_sessions=len(self.sessions),
                max_sessions=self.sessions.max_sessions,
                active_streams=self.stats.active_streams,
                queue_depth=self.stats.queue_depth,
                rtf=self.stats.rtf,
                first_audio_ms_p50=self.stats.first_audio_ms_p50,
            ),
            started_at=self.started_at,
        )

    async def start(self) -> None:
        """Bind, preload the default model, then report SERVING and register."""
        tts_pb2_grpc.add_TTSServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self.port = self.server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        if self.port == 0:
            raise OSError(f"cannot bind {self.config.host}:{self.config.port}")
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        log.info(
            "worker %s listening on %s:%d, loading %s",
            self.config.name,
            self.config.host,
            self.port,
            self.models.default_model_id,
        )
        await self.models.ensure_loaded(self.models.default_model_id)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        registry = self.config.registry
        if registry.redis_url:
            self.registrar = Registrar(
                registry.redis_url,
                RegistryKeys(registry.key_prefix),
                self.record,
                registry.heartbeat_s,
                registry.record_ttl_s,
            )
            self._tasks.append(asyncio.create_task(self.registrar.run()))
        self._tasks.append(
            asyncio.create_task(
                self.models.run_eviction(self.config.model_manager.evict_interval_s)
            )
        )
        self._tasks.append(asyncio.create_task(self._reap_idle_sessions()))
        log.info("worker %s ready at %s", self.config.name, self.config.address(self.port))

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def _reap_idle_sessions(self) -> None:
        idle_s = self.config.limits.session_idle_s
        while True:
            await asyncio.sleep(min(idle_s, 5.0))
            for session in self.sessions.idle(idle_s):
                log.info("session %s idle for %.0f s: ending it", session.id, idle_s)
                self.servicer.end_session(session.id)

    async def stop(self) -> None:
        """Drain: deregister, refuse new work, let open streams finish within drain_s."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.registrar is not None:
            await self.registrar.leave()
        await self.server.stop(self.config.drain_s)
        for session in self.sessions.all():
            self.servicer.end_session(session.id)
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("worker %s stopped", self.config.name)


async def serve(config: WorkerConfig) -> None:
    """Run a worker until SIGINT/SIGTERM."""
    worker = Worker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    await stop.wait()
    log.info("worker %s: shutting down (drain %.0f s)", config.name, config.drain_s)
    await worker.stop()
