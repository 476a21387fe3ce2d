"""The orchestrator's async front to ASR: one shared model, a bounded pool of threads."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from voicefleet.asr.base import ASRError, SpeechRecognizer, Transcript
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.whisperx import WhisperXRecognizer
from voicefleet.audio.pcm import Samples

WARM_UP_SECONDS = 1.0


def create_recognizer(config: ASRConfig) -> SpeechRecognizer:
    """Instantiate (not load) the recognizer config.engine names."""
    if config.engine == "whisperx":
        return WhisperXRecognizer(config)
    return FasterWhisperRecognizer(config)


def warm_up_audio(rate: int = 16000) -> Samples:
    """One second of faint, deterministic noise: decodes like a real clip, transcribes to ~''."""
    noise = np.random.default_rng(0).normal(0.0, 0.003, round(WARM_UP_SECONDS * rate))
    return noise.astype(np.float32)


class ASRService:
    """Transcribes for every session with one recognizer on `config.workers` threads."""

    def __init__(self, config: ASRConfig, recognizer: SpeechRecognizer | None = None) -> None:
        self.config = config
        self.recognizer = recognizer if recognizer is not None else create_recognizer(config)
        self._executor: ThreadPoolExecutor | None = None
        self._ready = False
        self._in_flight = 0

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and warmed up."""
        return self._ready

    @property
    def in_flight(self) -> int:
        """Transcriptions requested and not yet finished (running or queued)."""
        return self._in_flight

    async def start(self) -> None:
        """Load the model and run one warm-up transcription, both off the event loop."""
        if self._ready:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.config.workers, thread_name_prefix="asr"
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load_and_warm_up)
        self._ready = True

    def _load_and_warm_up(self) -> None:
        self.recognizer.load()
        # The first transcription pays for lazy set-up (thread pools, buffers); pay it here, not
        # in the first user's turn.
        self.recognizer.transcribe(warm_up_audio(self.recognizer.sample_rate))

    async def transcribe(self, audio: Samples) -> Transcript:
        """Transcribe float32 mono 16 kHz audio; waits for a free worker if all are busy."""
        if not self._ready or self._executor is None:
            raise ASRError("ASR service is not started (call start() first) or is closed")
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            # Cancelling the caller also cancels the job if it is still queued.
            return await loop.run_in_executor(self._executor, self.recognizer.transcribe, audio)
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        """Stop accepting work and drop queued jobs; a running one finishes in its thread."""
        self._ready = False
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
