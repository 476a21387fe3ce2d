"""Prometheus metrics of one TTS worker, on a registry of its own, served over HTTP when
`metrics.port` is set. The figures come from where the data passes: WorkerStats (streams,
frames, first frame, RTF, control latency, queue), the model manager (loads, evictions) and the
servicer's error boundary (errors by status code); gauges read the live tables at scrape time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from voicefleet.settings import ConfigError

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
# PAUSE/STOP are meant to act within a few ms (never more than 50).
_CONTROL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
_RTF_BUCKETS = (0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
_LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_UNLOAD_BUCKETS = (0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class WorkerMetrics:
    """Every worker metric in one registry (one per worker; tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge(
            "voicefleet_worker_sessions_active", "Sessions open now", registry=r
        )
        self.sessions_limit = Gauge(
            "voicefleet_worker_sessions_limit", "limits.max_sessions", registry=r
        )
        self.sessions = Counter(
            "voicefleet_worker_sessions", "Sessions started (StartSession answered)", registry=r
        )
        self.streams_active = Gauge(
            "voicefleet_worker_streams_active", "Synthesize streams running now", registry=r
        )
        self.streams = Counter(
            "voicefleet_worker_streams", "Synthesize streams started", registry=r
        )
        self.queue_depth = Gauge(
            "voicefleet_worker_queue_depth",
            "Text segments due and not yet synthesizing: waiting for a synthesis thread, or"
            " queued in a stream that renders everything at once (not a paced reply's later"
            " segments waiting for their listener)",
            registry=r,
        )
        self.draining = Gauge(
            "voicefleet_worker_draining", "1 while the worker drains (SIGTERM), else 0", registry=r
        )
        self.first_frame_seconds = Histogram(
            "voicefleet_worker_first_frame_seconds",
            "A stream's first text received -> its first frame sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "voicefleet_worker_rtf",
            "Real-time factor per synthesized segment: compute seconds / audio seconds",
            buckets=_RTF_BUCKETS,
            registry=r,
        )
        self.frames_sent = Counter(
            "voicefleet_worker_frames_sent", "20 ms audio frames sent", registry=r
        )
        self.audio_rendered = Counter(
            "voicefleet_worker_audio_rendered_seconds",
            "Audio synthesized, in seconds; beyond frames sent x 20 ms: rendered, never sent",
            registry=r,
        )
        self.control_seconds = Histogram(
            "voicefleet_worker_control_seconds",
            "PAUSE/STOP received -> obeyed (the stream's sender holds or ends before its next "
            "frame); 0 when the sender was waiting for audio",
            ["command"],
            buckets=_CONTROL_BUCKETS,
            registry=r,
        )
        self.model_loads = Counter(
            "voicefleet_worker_model_loads", "Models loaded (and warmed up)", ["model"], registry=r
        )
        self.model_load_seconds = Histogram(
            "voicefleet_worker_model_load_seconds",
            "Load plus warm-up of one model",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=r,
        )
        self.model_evictions = Counter(
            "voicefleet_worker_model_evictions",
            "Models dropped from memory, by reason (ttl, cap, unload)",
            ["model", "reason"],
            registry=r,
        )
        self.model_unload_seconds = Histogram(
            "voicefleet_worker_model_unload_seconds",
            "Time an eviction's adapter.unload() took",
            ["model"],
            buckets=_UNLOAD_BUCKETS,
            registry=r,
        )
        self.models_resident = Gauge(
            "voicefleet_worker_models_resident", "Models in memory now", registry=r
        )
        self.errors = Counter(
            "voicefleet_worker_errors",
            "RPCs answered with an error status, by RPC and gRPC code",
            ["rpc", "code"],
            registry=r,
        )

    def error(self, rpc: str, code: grpc.StatusCode) -> None:
        """One RPC ended with `code` (the servicer's error boundary and the auth check)."""
        self.errors.labels(rpc=rpc, code=code.name).inc()

    def read_live(
        self,
        *,
        sessions: Callable[[], float],
        sessions_limit: float,
        resident: Callable[[], float],
        draining: Callable[[], float],
    ) -> None:
        """Gauges read from the worker's own tables at scrape time."""
        self.sessions_active.set_function(sessions)
        self.sessions_limit.set(sessions_limit)
        self.models_resident.set_function(resident)
        self.draining.set_function(draining)


class MetricsServer:
    """The HTTP endpoint (any path answers the metrics; Prometheus asks /metrics)."""

    def __init__(self, metrics: WorkerMetrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one picked for port 0)."""
        return int(self._server.server_port) if self._server else self._port

    def start(self) -> None:
        """Bind and serve on a daemon thread; a port in use is a start-up error."""
        try:
            self._server, self._thread = start_http_server(
                self._port, self._host, self._metrics.registry
            )
        except OSError as error:
            raise ConfigError(
                f"metrics: cannot listen on {self._host}:{self._port}: {error.strerror}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=2)
            self._server = None
