"""`voicefleet worker`: assemble the servicer, model manager and registrar, run them, drain."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from voicefleet import tracing
from voicefleet.rpc.generated import tts_pb2, tts_pb2_grpc
from voicefleet.rpc.registry import RegistryKeys, WorkerLoad, WorkerRecord
from voicefleet.settings import ConfigError
from voicefleet.tts.auth import AuthInterceptor, load_credentials
from voicefleet.tts.config import TLSConfig, WorkerConfig
from voicefleet.tts.errors import Draining
from voicefleet.tts.metrics import MetricsServer, WorkerMetrics
from voicefleet.tts.models import ModelManager
from voicefleet.tts.registration import Registrar
from voicefleet.tts.scheduling import DeadlineExecutor
from voicefleet.tts.servicer import TTSServicer
from voicefleet.tts.session import SessionTable
from voicefleet.tts.stats import WorkerStats
from voicefleet.tts.stream import StreamSettings

log = logging.getLogger(__name__)

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TTS"].full_name
# After the drain, aborted streams get this long to send their status before the server stops.
STOP_GRACE_S = 1.0


def _read_pem(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"tls.{key}: cannot read {path}: {error.strerror}") from None


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """TLS credentials for the gRPC port; with client_ca, client certificates are required."""
    assert tls.cert is not None and tls.key is not None
    return grpc.ssl_server_credentials(
        [(_read_pem(tls.key, "key"), _read_pem(tls.cert, "cert"))],
        root_certificates=_read_pem(tls.client_ca, "client_ca") if tls.client_ca else None,
        require_client_auth=tls.client_ca is not None,
    )


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the port on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Worker:
    """One TTS worker process: gRPC server, models, sessions, registration."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.port = 0
        self.metrics = WorkerMetrics()
        self.executor = DeadlineExecutor(
            config.synthesis_threads,
            name="synth",
            by_deadline=config.synthesis_order == "deadline",
        )
        self.stats = WorkerStats(
            metrics=self.metrics, waiting_for_thread=lambda: self.executor.queued
        )
        self.models = ModelManager(
            {spec.id: spec for spec in config.models},
            config.default_model,
            self.executor,
            ttl_s=config.model_manager.ttl_s,
            resident_cap=config.model_manager.resident_cap,
            pin_default=config.model_manager.pin_default,
            metrics=self.metrics,
        )
        self.credentials = load_credentials(config.auth)
        self.sessions = SessionTable(
            config.limits.max_sessions, config.limits.max_sessions_per_credential
        )
        self.servicer = TTSServicer(
            config.name,
            self.models,
            self.sessions,
            self.executor,
            StreamSettings(
                max_lead_ms=config.max_lead_ms,
                render_ahead_ms=config.render_ahead_ms,
                first_segment_slack_s=config.first_segment_slack_ms / 1000,
                max_chunk_chars=config.limits.max_chunk_chars,
                max_stream_chars=config.limits.max_stream_chars,
                target_lufs=config.loudness.target_lufs,
                ceiling_dbfs=config.loudness.ceiling_dbfs,
                first_segment=config.first_segment.rule(),
            ),
            self.stats,
            self.credentials,
        )
        self.health = health_aio.HealthServicer()
        self.metrics.read_live(
            sessions=lambda: len(self.sessions),
            sessions_limit=config.limits.max_sessions,
            resident=lambda: len(self.models.resident_ids),
            draining=lambda: float(self.servicer.draining),
        )
        self.metrics_server: MetricsServer | None = None
        if config.metrics.port is not None:
            self.metrics_server = MetricsServer(
                self.metrics, config.metrics.host, config.metrics.port
            )
        interceptors = (
            [AuthInterceptor(self.credentials, refused=self._refused)]
            if self.credentials.enabled
            else []
        )
        self.server = grpc.aio.server(interceptors=interceptors)
        self.registrar: Registrar | None = None
        # Set by a drain request from the registry; serve() then drains as on SIGTERM.
        self.stop_requested = asyncio.Event()
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
            voices=self.models.voices,
            load=WorkerLoad(
                active_sessions=len(self.sessions),
                max_sessions=self.sessions.max_sessions,
                active_streams=self.stats.active_streams,
                queue_depth=self.stats.queue_depth,
                rtf=self.stats.rtf,
                first_audio_ms_p50=self.stats.first_audio_ms_p50,
            ),
            metrics_port=self.metrics_server.port if self.metrics_server else None,
            started_at=self.started_at,
        )

    def _refused(self, rpc: str) -> None:
        self.metrics.error(rpc, grpc.StatusCode.UNAUTHENTICATED)

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
        target = f"{self.config.host}:{self.config.port}"
        if self.config.tls.enabled:
            self.port = self.server.add_secure_port(target, server_credentials(self.config.tls))
        else:
            self.port = self.server.add_insecure_port(target)
        if self.port == 0:
            raise OSError(f"cannot bind {target}")
        self._log_exposure()
        if self.metrics_server is not None:
            self.metrics_server.start()
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
                registry.redis,
                RegistryKeys(registry.key_prefix),
                self.record,
                registry.heartbeat_s,
                registry.record_ttl_s,
                on_drain=self.stop_requested.set,
            )
            self._tasks.append(asyncio.create_task(self.registrar.run()))
        self._tasks.append(
            asyncio.create_task(
                self.models.run_eviction(self.config.model_manager.evict_interval_s)
            )
        )
        self._tasks.append(asyncio.create_task(self._reap_idle_sessions()))
        log.info("worker %s ready at %s", self.config.name, self.config.address(self.port))

    def _log_exposure(self) -> None:
        """Say who can use this port; warn loudly when anyone on the network can."""
        host, tls = self.config.host, self.config.tls
        transport = (
            "TLS" + (" with client certificates" if tls.client_ca else "")
            if tls.enabled
            else "plaintext"
        )
        if self.credentials.enabled:
            log.info(
                "auth on (%s gRPC): identities %s",
                transport,
                ", ".join(self.credentials.identities),
            )
        elif not is_loopback(host):
            log.warning(
                "worker %s listens on %s:%d with NO auth token (%s): anyone who reaches this "
                "port can open, control and end sessions and load or unload models; set "
                "auth.token or auth.token_file (docs/security.md)",
                self.config.name,
                host,
                self.port,
                transport,
            )

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
                self.servicer.end_session(session)

    async def drain(self, force: asyncio.Event | None = None) -> None:
        """SIGTERM: refuse new sessions and streams, deregister at once, let running streams
        finish within drain_s (or until `force` is set), then end every session and stop."""
        force = force or asyncio.Event()
        self.servicer.draining = True
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.registrar is not None:
            await self.registrar.leave()
        running = len(self.sessions.streaming())
        await self._wait_for_streams(force)
        cut = self.sessions.streaming()
        if cut:
            why = "a second signal" if force.is_set() else f"drain_s={self.config.drain_s:g} s"
            log.warning("drain: cutting %d running stream(s) after %s", len(cut), why)
            for session in cut:
                assert session.stream is not None
                session.stream.abort(
                    Draining(
                        f"worker draining: {self.config.name} cut this stream after {why}; "
                        "re-send the rest to another worker"
                    )
                )
        elif running:
            log.info("drain: the %d running stream(s) finished", running)
        for session in self.sessions.all():
            self.servicer.end_session(session)
        await self.server.stop(0 if force.is_set() else STOP_GRACE_S)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        log.info("worker %s stopped", self.config.name)

    async def _wait_for_streams(self, force: asyncio.Event) -> None:
        """Wait until no stream runs, drain_s passes or `force` is set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_s
        while self.sessions.streaming() and not force.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.02, remaining)):
                    await force.wait()


async def serve(config: WorkerConfig) -> None:
    """Run a worker until SIGINT/SIGTERM or a drain request in the registry, then drain; a
    signal during the drain cuts it short."""
    worker = Worker(config)
    stop, force = worker.stop_requested, asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("worker %s: second %s, stopping now", config.name, sig.name)
            force.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    tracing.configure(config.tracing, "worker", {"voicefleet.worker": config.name})
    try:
        await worker.start()
        await stop.wait()
        log.info(
            "worker %s: draining (up to %g s for running streams)", config.name, config.drain_s
        )
        await worker.drain(force)
    finally:
        tracing.shutdown()
