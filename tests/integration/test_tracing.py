"""Traces across the tiers: a spoken turn through a real orchestrator and a real Piper worker,
both exporting OTLP/HTTP to a collector in this test, make one trace: the orchestrator's turn
span, its phases, and the worker's synthesis span under it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.integration.conftest import PIPER, Stack, open_session, wait_for_event
from tests.speech import piper_speech
from tests.worker_process import free_port
from voicefleet.client.inputs import PacedAudio
from voicefleet.orchestrator.protocol import AudioEnd


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


class Collector:
    """An OTLP/HTTP trace receiver on a free port, in its own thread, keeping every span."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans: list[ReceivedSpan] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(10)

    def stop(self) -> None:
        async def close() -> None:
            await self._runner.cleanup()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self._loop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        self._runner = runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    async def _receive(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes: dict[str, object] = {}
                    for attribute in span.attributes:
                        value = attribute.value
                        attributes[attribute.key] = getattr(value, value.WhichOneof("value"))
                    self.spans.append(
                        ReceivedSpan(
                            resource.get("service.name", ""),
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    running.start()
    yield running
    running.stop()


async def test_one_trace_spans_the_orchestrator_and_the_worker(
    stack: Stack, collector: Collector
) -> None:
    tracing = {"enabled": True, "otlp_endpoint": collector.endpoint}
    worker = stack.worker(models=[{**PIPER, "voices": {"joe": ""}}], tracing=tracing)
    orchestrator = stack.orchestrator(tracing=tracing)
    session, _events = await open_session(orchestrator.ws_url)
    session.mark_input_start()
    clip = piper_speech("What time does the library open tomorrow?")
    await PacedAudio(clip.tobytes(), 16_000, tail_silence=1.2).send(session)
    assert await session.wait_reply(30), session.failure
    await session.close()
    orchestrator.stop()  # both processes flush their spans on the way out
    assert worker.terminate() == 0

    turns = [s for s in collector.spans if s.name == "voicefleet.turn"]
    assert turns and all(s.service == "voicefleet-orchestrator" for s in turns)
    turn = next(s for s in turns if s.attributes.get("voicefleet.outcome") == "completed")
    assert turn.attributes["voicefleet.frames"] > 0
    same_trace = [s for s in collector.spans if s.trace_id == turn.trace_id]
    phases = {s.name for s in same_trace if s.parent_id == turn.span_id}
    assert {"voicefleet.responder", "voicefleet.tts_first_frame", "voicefleet.playout"} <= phases
    worker_spans = [s for s in same_trace if s.service == "voicefleet-worker"]
    synthesize = [s for s in worker_spans if s.name == "voicefleet.worker.synthesize"]
    assert synthesize and synthesize[0].parent_id == turn.span_id
    assert synthesize[0].attributes["voicefleet.model"] == "en_US-joe-medium"
    assert synthesize[0].attributes["voicefleet.frames"] == turn.attributes["voicefleet.frames"]
    # The worker session opens with the turn's first reply, which may be a speculative one
    # dropped when speech resumed (a turn span of its own, cancelled, same turn number).
    attempts = {s.span_id: s for s in turns}
    starts = [
        s
        for s in collector.spans
        if s.service == "voicefleet-worker" and s.name == "voicefleet.worker.start_session"
    ]
    assert starts and starts[0].parent_id in attempts
    opened_by = attempts[starts[0].parent_id]
    assert opened_by.attributes["voicefleet.turn"] == turn.attributes["voicefleet.turn"]
    assert opened_by.trace_id == starts[0].trace_id


async def test_no_trace_header_reaches_a_worker_when_tracing_is_off(
    stack: Stack, collector: Collector
) -> None:
    """The orchestrator does not trace by default; a tracing worker then starts root spans of
    its own (no parent), and the collector hears nothing from the orchestrator."""
    tracing = {"enabled": True, "otlp_endpoint": collector.endpoint}
    worker = stack.worker(models=[{**PIPER, "voices": {"joe": ""}}], tracing=tracing)
    orchestrator = stack.orchestrator()
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text("Hello there.", "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 30)
    await session.close()
    orchestrator.stop()
    assert worker.terminate() == 0
    assert {s.service for s in collector.spans} == {"voicefleet-worker"}
    synthesize = [s for s in collector.spans if s.name == "voicefleet.worker.synthesize"]
    assert synthesize and all(s.parent_id == "" for s in synthesize)
