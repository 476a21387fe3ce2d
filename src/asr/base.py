"""The recognizer protocol: one blocking interface every ASR engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from voicefleet.asr.segments import Segment, SegmentOptions
from voicefleet.audio.pcm import Samples


@dataclass(frozen=True)
class Transcript:
    """The text of one utterance, with how long the audio was and how long it took."""

    text: str
    language: str
    audio_s: float
    compute_ms: float
    queued_ms: float = 0.0  # waiting for the recognizer (ASRService fills it in)


class ASRError(Exception):
    """A recognizer that cannot load or cannot transcribe; the message says which and why."""


class ASRUnavailable(ASRError):
    """An engine whose optional package is not installed."""


class SpeechRecognizer(ABC):
    """Base of every engine. Methods block; ASRService calls them off the event loop."""

    name: ClassVar[str]
    sample_rate: ClassVar[int] = 16000

    @abstractmethod
    def load(self) -> None:
        """Load the model into memory; raise ASRError naming a missing path."""

    @abstractmethod
    def transcribe(self, audio: Samples, language: str | None = None) -> Transcript:
        """Transcribe one utterance: float32 mono samples in [-1, 1] at sample_rate, spoken in
        `language` (the session's BCP-47 tag; None: the configured language)."""

    def transcribe_batch(
        self, audios: list[Samples], languages: Sequence[str | None] | None = None
    ) -> list[Transcript]:
        """Several utterances at once; engines that can batch their model calls override this."""
        spoken = languages if languages is not None else [None] * len(audios)
        return [
            self.transcribe(audio, language) for audio, language in zip(audios, spoken, strict=True)
        ]

    def language_for(self, requested: str | None) -> str:
        """The language a request in `requested` (None: the configured one) is heard in."""
        return requested or "en"

    def segments(self, audio: Samples, options: SegmentOptions) -> Generator[Segment, None, None]:
        """The audio as timed segments, yielded as they are decoded; engines without
        timestamps yield the whole transcript as one segment (no words)."""
        transcript = self.transcribe(audio, options.language)
        if transcript.text:
            yield Segment(0, 0.0, transcript.audio_s, transcript.text)


def check_audio(audio: Samples) -> Samples:
    """Return audio as contiguous mono float32, or raise ASRError saying what is wrong."""
    array = np.asarray(audio)
    if array.ndim != 1:
        raise ASRError(f"audio must be mono (1-D), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ASRError(f"audio must be float samples in [-1, 1], got dtype {array.dtype}")
    checked: Samples = np.ascontiguousarray(array, dtype=np.float32)
    return checked
