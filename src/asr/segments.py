"""Transcripts with time: segments and words, for whoever needs more than the text (the
OpenAI-compatible transcription API's `verbose_json`, word timings in transcripts).

A recognizer yields segments one at a time as it decodes them, so a long file's first words
can be sent before its last are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    """One word and when it was spoken (seconds from the start of the audio)."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Segment:
    """A stretch of speech the recognizer decoded as one piece."""

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0


@dataclass(frozen=True)
class SegmentOptions:
    """How to transcribe a file: its language (None: the configured one), a prompt that
    primes spelling and style, whether to time every word."""

    language: str | None = None
    prompt: str = ""
    words: bool = False
    temperature: float = 0.0


@dataclass
class SegmentedTranscript:
    """What a whole file's segments add up to."""

    language: str
    duration_s: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The segments' texts, stripped, joined with spaces."""
        return " ".join(text for segment in self.segments if (text := segment.text.strip()))

    @property
    def words(self) -> list[Word]:
        """Every segment's words, in order."""
        return [word for segment in self.segments for word in segment.words]
