"""The orchestrator's async front to ASR: one shared model, a scheduler in front of it.

Every session's transcriptions go through one queue. Finals (the end of a turn, a speculative
transcript: someone waits for them) are served first, oldest first, and up to `max_batch` of
them share one model call (one encoder pass, one decoding pass over the batch), so sixteen
people who stop talking at once do not wait for sixteen calls one after another. A partial
transcript is a courtesy: it runs only when a lane is idle and nothing is queued, else it is
dropped (never queued), so it never delays a final. `workers` lanes run at once (CTranslate2
replicas of the model, `cpu_threads` each). Each result says how long it waited (`queued_ms`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from voicefleet.asr.base import ASRError, SpeechRecognizer, Transcript, check_audio
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.segments import Segment, SegmentOptions
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


@dataclass(eq=False)  # a job is itself, not its fields: kept in a set
class _Job:
    audio: Samples
    language: str | None
    future: asyncio.Future[Transcript]
    queued_at: float = field(default_factory=time.perf_counter)


class ASRService:
    """Transcribes for every session: finals batched and first, partials only when idle."""

    def __init__(self, config: ASRConfig, recognizer: SpeechRecognizer | None = None) -> None:
        self.config = config
        self.recognizer = recognizer if recognizer is not None else create_recognizer(config)
        self._executor: ThreadPoolExecutor | None = None
        self._ready = False
        self._finals: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._lanes: list[asyncio.Task[None]] = []
        self._active: set[_Job] = set()  # jobs inside a model call now
        self._files = 0  # whole files being decoded (segments())
        #: Partials refused because the recognizer was busy (a metric for operators).
        self.partials_dropped = 0

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and warmed up."""
        return self._ready

    @property
    def in_flight(self) -> int:
        """Transcriptions requested and not yet finished (running or queued)."""
        return len(self._active) + len(self._finals)

    @property
    def queued(self) -> int:
        """Finals waiting for a lane."""
        return len(self._finals)

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
        self._wake = asyncio.Event()
        self._lanes = [asyncio.create_task(self._lane()) for _ in range(self.config.workers)]
        self._ready = True

    def _load_and_warm_up(self) -> None:
        self.recognizer.load()
        # The first transcription pays for lazy set-up (thread pools, buffers); pay it here, not
        # in the first user's turn.
        self.recognizer.transcribe(warm_up_audio(self.recognizer.sample_rate))

    async def transcribe(self, audio: Samples, language: str | None = None) -> Transcript:
        """A final: float32 mono 16 kHz audio in the session's language (None: the configured
        one), queued until a lane takes it (oldest first). Cancelling the caller takes a queued
        job out of the queue."""
        job = self._job(audio, language)
        self._finals.append(job)
        self._wake.set()
        return await job.future

    async def partial(self, audio: Samples, language: str | None = None) -> Transcript | None:
        """A partial: runs at once if a lane is idle and no final waits, else None (dropped)."""
        if len(self._active) + len(self._finals) + self._files >= self.config.workers:
            self.partials_dropped += 1
            return None
        job = self._job(audio, language)
        # Straight to the model: nothing waits, so it delays no final that is not there yet.
        await self._run([job])
        return await job.future

    def _job(self, audio: Samples, language: str | None) -> _Job:
        if not self._ready or self._executor is None:
            raise ASRError("ASR service is not started (call start() first) or is closed")
        return _Job(check_audio(audio), language, asyncio.get_running_loop().create_future())

    async def segments(self, audio: Samples, options: SegmentOptions) -> AsyncIterator[Segment]:
        """A whole file as timed segments, each yielded as soon as it is decoded. Runs on the
        model's threads beside the conversations' finals (a file never waits in their queue,
        and they never wait behind a whole file: it takes one thread per window); callers
        bound how many run at once. Leaving early stops decoding at the next segment."""
        if not self._ready or self._executor is None:
            raise ASRError("ASR service is not started (call start() first) or is closed")
        clip = check_audio(audio)
        loop = asyncio.get_running_loop()
        decoded = self.recognizer.segments(clip, options)
        self._files += 1
        step: concurrent.futures.Future[Segment | None] | None = None
        try:
            while True:
                step = self._executor.submit(next, decoded, None)
                segment = await asyncio.wrap_future(step, loop=loop)
                if segment is None:
                    return
                yield segment
        finally:
            if step is not None and not step.done():
                # Left while a thread decodes: closing the generator now would raise
                # "generator already executing", and the model is still busy. That thread
                # closes it once its step is over, and only then is the file done.
                def finished(_step: object) -> None:
                    decoded.close()
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        loop.call_soon_threadsafe(self._file_done)

                step.add_done_callback(finished)
            else:
                decoded.close()
                self._file_done()

    def _file_done(self) -> None:
        self._files -= 1

    async def _lane(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._run(batch)

    def _take(self) -> list[_Job]:
        """Up to max_batch queued finals, oldest first; those whose caller left are skipped."""
        batch: list[_Job] = []
        while self._finals and len(batch) < self.config.max_batch:
            job = self._finals.popleft()
            if not job.future.done():
                batch.append(job)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        executor = self._executor
        if executor is None:
            error = ASRError("ASR service closed")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        audios = [job.audio for job in batch]
        languages = [job.language for job in batch]
        self._active.update(batch)
        try:
            results = await loop.run_in_executor(
                executor, self.recognizer.transcribe_batch, audios, languages
            )
        except Exception as error:  # the engine's failure is each waiting caller's error
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        finally:
            self._active.difference_update(batch)
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                queued_ms = (began - job.queued_at) * 1000
                job.future.set_result(replace(result, queued_ms=queued_ms))

    def close(self) -> None:
        """Stop accepting work; every caller still waiting gets ASRError (a model call already
        running finishes in its thread, unheard)."""
        self._ready = False
        for lane in self._lanes:
            lane.cancel()
        self._lanes = []
        error = ASRError("ASR service closed")
        for job in [*self._finals, *self._active]:
            if not job.future.done():
                job.future.set_exception(error)
        self._finals.clear()
        self._active.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
