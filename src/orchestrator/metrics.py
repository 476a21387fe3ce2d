"""Prometheus metrics of the orchestrator (served at /metrics)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class OrchestratorMetrics:
    """Every metric in one registry (one per process; tests may make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("voicefleet_sessions_active", "Open sessions", registry=r)
        self.sessions_total = Counter(
            "voicefleet_sessions", "Sessions opened", ["transport"], registry=r
        )
        self.transitions = Counter(
            "voicefleet_state_transitions", "State machine moves", ["previous", "state"], registry=r
        )
        self.asr_seconds = Histogram(
            "voicefleet_asr_seconds",
            "ASR compute per utterance",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.asr_queue_seconds = Histogram(
            "voicefleet_asr_queue_seconds",
            "Transcription requested -> the recognizer starts on it (waiting for a lane)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.asr_partials_dropped = Counter(
            "voicefleet_asr_partials_dropped",
            "Partial transcripts not made because the recognizer was busy",
            registry=r,
        )
        self.tts_first_frame_seconds = Histogram(
            "voicefleet_tts_first_frame_seconds",
            "Reply text handed to TTS -> first frame back",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "voicefleet_event_loop_lag_seconds",
            "How late the event loop woke a 100 ms timer (every session's audio waits on it)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.ttfa_seconds = Histogram(
            "voicefleet_time_to_first_audio_seconds",
            "End of the person's speech -> first reply audio sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.barge_in_seconds = Histogram(
            "voicefleet_barge_in_seconds",
            "Onset of speech over the agent -> playback paused at the client (stream time)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.echo_reduction_db = Histogram(
            "voicefleet_echo_reduction_db",
            "Per session with the echo canceller on: how much quieter the microphone was after "
            "cancellation while the reply played (dB)",
            buckets=(0, 3, 6, 10, 15, 20, 25, 30, 40, 50, 60),
            registry=r,
        )
        self.frames_sent = Counter("voicefleet_frames_sent", "Audio frames sent", registry=r)
        self.underruns = Counter(
            "voicefleet_playback_underruns", "Reply audio arrived later than real time", registry=r
        )
        self.errors = Counter("voicefleet_errors", "Errors by kind", ["kind"], registry=r)
        self.failovers = Counter(
            "voicefleet_tts_failovers", "Replies re-routed after a worker failed", registry=r
        )
        self.api_requests = Counter(
            "voicefleet_api_requests",
            "Requests to the standard APIs, by route and HTTP status",
            ["api", "status"],
            registry=r,
        )
        self.api_first_byte_seconds = Histogram(
            "voicefleet_api_speech_first_byte_seconds",
            "Speech request received -> first audio byte sent (OpenAI API)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.wyoming_requests = Counter(
            "voicefleet_wyoming_requests",
            "Wyoming requests, by kind (describe, synthesize, synthesize_stream, transcribe)",
            ["request"],
            registry=r,
        )
        self.wyoming_errors = Counter(
            "voicefleet_wyoming_errors",
            "Wyoming error events sent (and refused connections), by code",
            ["code"],
            registry=r,
        )
        self.placements = Counter(
            "voicefleet_tts_placements",
            "Worker sessions opened, by whether the worker had the model resident or loaded it",
            ["model"],
            registry=r,
        )
        self.stalls = Counter(
            "voicefleet_tts_stalls", "Worker streams that stopped delivering audio owed", registry=r
        )
        self.decisions = Counter(
            "voicefleet_turn_decisions",
            "Turn decisions (speculation started/committed/dropped, barge-in candidate/real/"
            "false alarm, ...)",
            ["decision"],
            registry=r,
        )
        self.registry_skipped = Counter(
            "voicefleet_registry_records_skipped",
            "Registry records that turned bad and are skipped (FleetView.skipped_total)",
            ["reason"],
            registry=r,
        )
        self._registry_skipped_seen: dict[str, int] = {}

    def sync_registry_skipped(self, totals: Mapping[str, int]) -> None:
        """Bring the skipped-records counter up to the fleet view's own counts."""
        for reason, total in totals.items():
            seen = self._registry_skipped_seen.get(reason, 0)
            self.registry_skipped.labels(reason=reason).inc(max(0, total - seen))
            self._registry_skipped_seen[reason] = max(seen, total)
