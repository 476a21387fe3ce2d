"""Listening: the session's transcription jobs and its partial transcripts.

A job's result goes back to the turn controller as a `Transcribed` event (with how long it
waited for the recognizer). A session that asked for word timings (`hello.transcript_words`)
gets its finals from faster-whisper's timed segments instead, with each word's times and
confidence: slower (bench/asr.py measures by how much), so off by default.

Partial transcripts are a courtesy: the ASR service runs one only
while it is idle (a partial is dropped, never queued, so it never delays anyone's final), and
one is not sent when the turn's final has gone out meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from voicefleet.asr.base import Transcript
from voicefleet.asr.segments import SegmentOptions, Word
from voicefleet.audio.pcm import int16_to_float
from voicefleet.orchestrator.audio_in import AudioIn
from voicefleet.orchestrator.protocol import TranscriptEvent
from voicefleet.orchestrator.protocol_tools import TranscriptWord
from voicefleet.orchestrator.services import Services, SessionSink
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.turn_events import Transcribed, TurnEvent


class Listening:
    """ASR for one session."""

    def __init__(
        self,
        audio_in: AudioIn,
        services: Services,
        sink: SessionSink,
        post: Callable[[TurnEvent], None],
        turn: Callable[[], int],
        language: str | None = None,
        words: bool = False,
    ) -> None:
        self.audio_in = audio_in
        self.services = services
        self.config = services.config
        self.sink = sink
        self.post = post
        self.turn = turn  # the last turn whose final transcript went out
        self.language = language  # the session's (hello's); a multilingual model hears it
        self.words = words  # finals with word timings
        self._last_partial = 0.0
        self._partials: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def transcribe(self, job: int, audio: np.ndarray) -> None:
        """Run one job; its text (or failure) comes back as Transcribed(job)."""
        if self.words:
            await self._timed(job, audio)
            return
        try:
            transcript = await self.services.asr.transcribe(_samples(audio), self.language)
        except Exception as error:
            self.services.metrics.errors.labels("asr").inc()
            self.post(Transcribed(job, "", f"transcription failed: {error}"))
            return
        self._observe(transcript)
        self.post(Transcribed(job, transcript.text.strip(), queued_ms=transcript.queued_ms))

    async def _timed(self, job: int, audio: np.ndarray) -> None:
        options = SegmentOptions(language=self.language, words=True)
        began = time.perf_counter()
        texts: list[str] = []
        words: list[TranscriptWord] = []
        try:
            async for segment in self.services.asr.segments(_samples(audio), options):
                texts.append(segment.text)
                words += [
                    TranscriptWord(w.word, w.start, w.end, w.probability) for w in segment.words
                ]
        except Exception as error:
            self.services.metrics.errors.labels("asr").inc()
            self.post(Transcribed(job, "", f"transcription failed: {error}"))
            return
        self.services.metrics.asr_seconds.observe(time.perf_counter() - began)
        confidence = sum(w.confidence for w in words) / len(words) if words else None
        text = " ".join(t for t in texts if t)
        self.post(Transcribed(job, text, words=tuple(words), confidence=_rounded(confidence)))

    def _observe(self, transcript: Transcript) -> None:
        metrics = self.services.metrics
        metrics.asr_seconds.observe(transcript.compute_ms / 1000)
        metrics.asr_queue_seconds.observe(transcript.queued_ms / 1000)

    def maybe_partial(self, state: State, speculating: bool) -> None:
        """Start a partial transcript if one is due (the ASR service drops it if busy)."""
        interval = self.config.partial_interval_s
        segmenter = self.audio_in.segmenter
        if (
            not interval
            or self._closed
            or state is not State.LISTENING
            or not segmenter.in_speech
            or speculating
            or segmenter.voiced_s < interval
            or time.monotonic() - self._last_partial < interval
        ):
            return
        self._last_partial = time.monotonic()
        task = asyncio.create_task(self._partial(segmenter.utterance_audio(), self.turn() + 1))
        self._partials.add(task)
        task.add_done_callback(self._partials.discard)

    async def _partial(self, audio: np.ndarray, turn: int) -> None:
        try:
            transcript = await self.services.asr.partial(_samples(audio), self.language)
        except Exception:
            return  # a failed partial is not worth an error; the final will say
        if transcript is None:
            self.services.metrics.asr_partials_dropped.inc()
            return  # the recognizer was busy: dropped, not queued
        self._observe(transcript)
        text = transcript.text.strip()
        # Stale when the turn's final has gone out meanwhile.
        if text and self.turn() < turn and not self._closed:
            await self.sink.send_event(TranscriptEvent(text=text, final=False, turn=turn))

    def close(self) -> None:
        """No more partials."""
        self._closed = True
        for task in self._partials:
            task.cancel()


def _timing(word: Word) -> tuple[str, float, float, float]:
    return word.word, word.start, word.end, word.probability


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _samples(audio: np.ndarray) -> np.ndarray:
    return int16_to_float(audio)
