"""The turn controller's own duties, with the real controller and no models: the responder is
closed when the session ends, a failing reply is reported and the session goes on, and what the
person does is served before work already queued."""

from __future__ import annotations

import asyncio

from voicefleet.asr.config import ASRConfig
from voicefleet.asr.service import ASRService
from voicefleet.fleet import FleetView, Router, RouterConfig, WorkerPool
from voicefleet.orchestrator.config import PipelineConfig
from voicefleet.orchestrator.controller import TurnController
from voicefleet.orchestrator.metrics import OrchestratorMetrics
from voicefleet.orchestrator.protocol import ErrorEvent, Hello, ServerMessage, StateChanged
from voicefleet.orchestrator.responder import EchoResponder
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.turn_events import InterruptRequest, Tick, Transcribed


class Sink:
    def __init__(self) -> None:
        self.events: list[ServerMessage] = []
        self.closed_with: str | None = None

    async def send_event(self, message: ServerMessage) -> None:
        self.events.append(message)

    async def send_audio(self, pcm: bytes) -> None:
        raise AssertionError("no audio without a worker")

    async def close(self, reason: str) -> None:
        self.closed_with = reason


class ClosingResponder(EchoResponder):
    def __init__(self) -> None:
        super().__init__()
        self.closed = asyncio.Event()

    async def close(self) -> None:
        self.closed.set()


def services() -> tuple[Services, FleetView]:
    fleet = FleetView(RouterConfig(redis_url="redis://127.0.0.1:9/0"))  # never contacted
    built = Services(
        config=PipelineConfig(),
        asr=ASRService(ASRConfig()),
        router=Router(fleet),
        pool=WorkerPool(),
        metrics=OrchestratorMetrics(),
    )
    return built, fleet


async def until(condition: object, within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_the_responder_is_closed_when_the_session_ends() -> None:
    shared, fleet = services()
    sink, responder = Sink(), ClosingResponder()
    session = TurnController("c1", Hello(sample_rate=16_000), shared, responder, sink, "test")
    await session.start()
    await session.push_text("Hello there.", "answer")
    # No worker is registered: the reply fails with a clear error, the session goes on.
    await until(lambda: any(isinstance(e, ErrorEvent) for e in sink.events))
    error = next(e for e in sink.events if isinstance(e, ErrorEvent))
    assert error.code == "tts_failed" and not error.fatal
    await until(lambda: session.state.value == "listening")
    await session.close("bye")
    assert session.closed.is_set() and sink.closed_with == "bye"
    await asyncio.wait_for(responder.closed.wait(), 5)
    states = [e.state for e in sink.events if isinstance(e, StateChanged)]
    assert states == ["listening", "waiting_for_input", "listening", "terminated"]
    await fleet.close()


async def test_what_the_person_does_jumps_the_queue() -> None:
    shared, fleet = services()
    session = TurnController("c2", Hello(sample_rate=16_000), shared, EchoResponder(), Sink(), "t")
    handled: list[str] = []
    original = session.core.handle

    def record(event: object, now: float) -> list[object]:
        handled.append(type(event).__name__)
        return original(event, now)  # type: ignore[arg-type]

    session.core.handle = record  # type: ignore[method-assign,assignment]
    # Queued before the loop runs: internal work first, then the person's interrupt.
    session.post(Tick())
    session.post(Transcribed(99, "stale"))
    session.post(InterruptRequest())
    await session.start()
    await until(lambda: len(handled) >= 3)
    assert handled[:3] == ["InterruptRequest", "Tick", "Transcribed"]
    await session.close("bye")
    await fleet.close()
