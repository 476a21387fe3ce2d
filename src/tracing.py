"""OpenTelemetry traces across the tiers: a turn span in the orchestrator, its context carried
to the worker in gRPC metadata (W3C `traceparent`), the worker's synthesis spans under it.

Off by default. `tracing.enabled: true` with `otlp_endpoint` (an OTLP/HTTP collector, e.g.
`http://otel-collector:4318`) exports spans in batches; `exporter: console` prints them. The
process keeps its own TracerProvider (never the global one, which libraries such as
livekit-agents may set up for themselves); when tracing is off every span is a no-op and no
header is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()
_INSTRUMENTATION = "voicefleet"


class TracingConfig(BaseModel):
    """The `tracing:` section of the orchestrator's and the worker's config."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="record and export spans")
    exporter: Literal["otlp", "console"] = Field("otlp", description="where spans go")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL; null: OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    service_name: str | None = Field(None, description="null: voicefleet-<process>")


class Tracing:
    """One process's tracer, and the gRPC metadata that carries a span's context."""

    def __init__(self, tracer: trace.Tracer, provider: TracerProvider | None = None) -> None:
        self.tracer = tracer
        self.provider = provider

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded."""
        return self.provider is not None

    def shutdown(self) -> None:
        """Export what is buffered, then stop."""
        if self.provider is not None:
            self.provider.shutdown()


_current = Tracing(trace.NoOpTracer())


def tracer() -> trace.Tracer:
    """This process's tracer (a no-op one until `configure` enables tracing)."""
    return _current.tracer


def configure(
    config: TracingConfig,
    process: str,
    attributes: dict[str, str] | None = None,
    processors: Sequence[SpanProcessor] = (),
) -> Tracing:
    """Set up this process's tracing from its config (`processors`: extra ones, for tests)."""
    global _current
    if not config.enabled and not processors:
        _current = Tracing(trace.NoOpTracer())
        return _current
    resource = Resource.create(
        {"service.name": config.service_name or f"voicefleet-{process}", **(attributes or {})}
    )
    provider = TracerProvider(resource=resource)
    if config.enabled:
        provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
    for processor in processors:
        provider.add_span_processor(processor)
    _current = Tracing(provider.get_tracer(_INSTRUMENTATION), provider)
    log.info("tracing on (%s)", config.exporter if config.enabled else "test processors")
    return _current


def shutdown() -> None:
    """Flush and stop this process's tracing (at exit)."""
    _current.shutdown()


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.exporter == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if config.otlp_endpoint:
        return OTLPSpanExporter(endpoint=config.otlp_endpoint.rstrip("/") + "/v1/traces")
    return OTLPSpanExporter()


def inject(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """`metadata` plus the current span's `traceparent` (unchanged when none is recording)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return (*metadata, *carrier.items()) if carrier else metadata


def extract(metadata: Iterable[tuple[str, Any]] | None) -> otel_context.Context:
    """The context a caller sent in gRPC metadata (an empty one when none)."""
    carrier: MutableMapping[str, str] = {}
    for key, value in metadata or ():
        if key in ("traceparent", "tracestate") and isinstance(value, str):
            carrier[key] = value
    return _PROPAGATOR.extract(carrier)


@contextmanager
def current(span: trace.Span) -> Iterator[None]:
    """Make `span` the current one inside the block (tasks created there inherit it)."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


def epoch_ns(perf_s: float) -> int:
    """A time.perf_counter() mark as the epoch nanoseconds spans are stamped with."""
    return time.time_ns() - round((time.perf_counter() - perf_s) * 1e9)
