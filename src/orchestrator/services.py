"""What every session shares (Services), where its output goes (SessionSink), and the
latencies of one turn (TurnTiming), reported to the client and to Prometheus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from voicefleet.asr.service import ASRService
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.router import Router
from voicefleet.orchestrator.config import PipelineConfig
from voicefleet.orchestrator.metrics import OrchestratorMetrics
from voicefleet.orchestrator.protocol import ServerMessage, TurnMetrics

if TYPE_CHECKING:
    from voicefleet.orchestrator.reply import Reply


class SessionSink(Protocol):
    """Where a session's output goes (the transport)."""

    async def send_event(self, message: ServerMessage) -> None:
        """Deliver a JSON event."""

    async def send_audio(self, pcm: bytes) -> None:
        """Deliver one 20 ms 48 kHz frame."""

    async def close(self, reason: str) -> None:
        """End the transport's side of the session."""


@dataclass
class Services:
    """What every session of a process shares."""

    config: PipelineConfig
    asr: ASRService
    router: Router
    pool: WorkerPool
    metrics: OrchestratorMetrics


@dataclass
class TurnTiming:
    """Latencies of the current turn, reported in its metrics event."""

    endpoint_ms: float | None = None
    asr_ms: float | None = None
    asr_queue_ms: float | None = None
    barge_in_ms: float | None = None
    end_of_turn: str | None = None

    def report(self, reply: Reply, metrics: OrchestratorMetrics) -> TurnMetrics:
        """The turn's metrics event; TTS first-frame latency and TTFA also go to Prometheus."""
        t = reply.timings
        first_frame_ms = ttfa_ms = None
        if t.text_ready is not None and t.first_frame is not None:
            first_frame_ms = (t.first_frame - t.text_ready) * 1000
            metrics.tts_first_frame_seconds.observe(first_frame_ms / 1000)
        speech_end = reply.speech_end_at
        if speech_end is not None and t.first_sent is not None:
            ttfa_ms = (t.first_sent - speech_end) * 1000
            metrics.ttfa_seconds.observe(ttfa_ms / 1000)
        return TurnMetrics(
            turn=reply.turn,
            endpoint_ms=_round(self.endpoint_ms),
            asr_ms=_round(self.asr_ms),
            asr_queue_ms=_round(self.asr_queue_ms),
            first_frame_ms=_round(first_frame_ms),
            ttfa_ms=_round(ttfa_ms),
            barge_in_ms=_round(self.barge_in_ms),
            end_of_turn=self.end_of_turn,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
