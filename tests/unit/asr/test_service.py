import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import pytest

from tests.speech import piper_speech, to_float
from voicefleet.asr import ASRConfig, ASRError, SpeechRecognizer, Transcript
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.service import ASRService, create_recognizer, warm_up_audio
from voicefleet.asr.wer import word_error_rate
from voicefleet.audio.pcm import Samples


class GatedRecognizer(SpeechRecognizer):
    """Answers with the clip's length once the gate opens; records how many ran at once."""

    name: ClassVar[str] = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.loads = 0
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.languages: list[str | None] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        self.loads += 1

    def transcribe(self, audio: Samples, language: str | None = None) -> Transcript:
        with self._lock:
            self.languages.append(language)
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if not self.gate.wait(timeout=10):
                raise TimeoutError("gate never opened")
            return Transcript(str(audio.size), "en", audio.size / self.sample_rate, 0.1)
        finally:
            with self._lock:
                self.running -= 1


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_start_loads_once_and_warms_up_off_the_loop() -> None:
    fake = GatedRecognizer()
    fake.gate.set()
    service = ASRService(ASRConfig(), recognizer=fake)
    assert not service.ready
    await service.start()
    await service.start()
    assert service.ready
    assert (fake.loads, fake.calls) == (1, 1)
    service.close()
    assert not service.ready


async def test_requests_beyond_the_workers_queue_and_are_counted() -> None:
    fake = GatedRecognizer()
    fake.gate.set()
    service = ASRService(ASRConfig(workers=1), recognizer=fake)
    await service.start()
    fake.gate.clear()
    jobs = [
        asyncio.create_task(service.transcribe(np.zeros(n, dtype=np.float32)))
        for n in (100, 200, 300)
    ]
    await wait_until(lambda: fake.running == 1)
    assert service.in_flight == 3
    fake.gate.set()
    results = await asyncio.gather(*jobs)
    assert [r.text for r in results] == ["100", "200", "300"]
    assert fake.most_running == 1
    assert service.in_flight == 0
    service.close()


async def test_transcribing_before_start_or_after_close_is_an_error() -> None:
    fake = GatedRecognizer()
    fake.gate.set()
    service = ASRService(ASRConfig(), recognizer=fake)
    with pytest.raises(ASRError, match="not started"):
        await service.transcribe(np.zeros(10, dtype=np.float32))
    await service.start()
    service.close()
    with pytest.raises(ASRError, match="not started"):
        await service.transcribe(np.zeros(10, dtype=np.float32))
    assert fake.calls == 1  # only the warm-up ran


def test_the_default_engine_is_faster_whisper() -> None:
    assert isinstance(create_recognizer(ASRConfig()), FasterWhisperRecognizer)
    noise = warm_up_audio()
    assert noise.dtype == np.float32
    assert noise.size == 16000
    assert 0 < float(np.abs(noise).max()) < 0.05


async def test_two_sessions_share_one_worker_and_both_get_their_text() -> None:
    texts = ["Turn on the kitchen lights please.", "What is the weather like this weekend?"]
    clips = [to_float(piper_speech(text, deterministic=True)) for text in texts]
    service = ASRService(ASRConfig(workers=1))
    await service.start()
    try:
        assert service.ready
        pending = [asyncio.create_task(service.transcribe(clip)) for clip in clips]
        await asyncio.sleep(0)
        assert service.in_flight == 2
        transcripts = await asyncio.gather(*pending)
    finally:
        service.close()
    for text, transcript in zip(texts, transcripts, strict=True):
        assert word_error_rate(text, transcript.text) <= 0.2, transcript.text
    assert service.in_flight == 0


class BatchRecorder(GatedRecognizer):
    """Records the size of every model call."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def transcribe_batch(
        self, audios: list[Samples], languages: Sequence[str | None] | None = None
    ) -> list[Transcript]:
        self.batches.append([audio.size for audio in audios])
        return super().transcribe_batch(audios, languages)


async def started(recognizer: GatedRecognizer, **config: int) -> ASRService:
    recognizer.gate.set()
    service = ASRService(ASRConfig(**config), recognizer=recognizer)  # type: ignore[arg-type]
    await service.start()
    return service


async def occupy(service: ASRService, fake: GatedRecognizer) -> asyncio.Task[Transcript]:
    """Close the gate and start a one-sample final; return once the recognizer is busy on it."""
    fake.gate.clear()
    first = asyncio.create_task(service.transcribe(np.zeros(1, dtype=np.float32)))
    await wait_until(lambda: fake.running == 1)
    return first


async def test_finals_that_wait_share_one_call_up_to_max_batch_oldest_first() -> None:
    fake = BatchRecorder()
    service = await started(fake, workers=1, max_batch=3)
    first = await occupy(service, fake)
    waiting = [
        asyncio.create_task(service.transcribe(np.zeros(n, dtype=np.float32))) for n in (2, 3, 4, 5)
    ]
    await asyncio.sleep(0.05)
    assert service.queued == 4
    fake.gate.set()
    results = await asyncio.gather(first, *waiting)
    assert [r.text for r in results] == ["1", "2", "3", "4", "5"]
    assert fake.batches == [[1], [2, 3, 4], [5]]
    # The ones that waited say so; the first did not wait.
    assert results[0].queued_ms < 40
    assert all(r.queued_ms >= 40 for r in results[1:])
    service.close()


async def test_a_partial_never_waits_it_is_dropped_while_the_recognizer_is_busy() -> None:
    fake = BatchRecorder()
    service = await started(fake, workers=1)
    idle = await service.partial(np.zeros(7, dtype=np.float32))
    assert idle is not None and idle.text == "7"
    final = await occupy(service, fake)
    assert await service.partial(np.zeros(8, dtype=np.float32)) is None
    assert service.partials_dropped == 1
    fake.gate.set()
    assert (await final).text == "1"
    assert [8] not in fake.batches


async def test_a_final_whose_caller_left_is_not_transcribed() -> None:
    fake = BatchRecorder()
    service = await started(fake, workers=1, max_batch=4)
    first = await occupy(service, fake)
    dropped = asyncio.create_task(service.transcribe(np.zeros(2, dtype=np.float32)))
    kept = asyncio.create_task(service.transcribe(np.zeros(3, dtype=np.float32)))
    await asyncio.sleep(0.02)
    dropped.cancel()
    fake.gate.set()
    assert [(await first).text, (await kept).text] == ["1", "3"]
    assert fake.batches == [[1], [3]]
    service.close()


async def test_closing_fails_the_queued_finals_with_a_clear_error() -> None:
    fake = BatchRecorder()
    service = await started(fake, workers=1)
    running = await occupy(service, fake)
    queued = asyncio.create_task(service.transcribe(np.zeros(2, dtype=np.float32)))
    await asyncio.sleep(0.02)
    service.close()
    for job in (running, queued):
        with pytest.raises(ASRError, match="closed"):
            await job
    fake.gate.set()


async def test_an_engine_failure_is_the_error_of_every_caller_in_the_batch() -> None:
    class Broken(BatchRecorder):
        def transcribe_batch(
            self, audios: list[Samples], languages: Sequence[str | None] | None = None
        ) -> list[Transcript]:
            if len(audios) > 1:
                raise ASRError("engine broke")
            return super().transcribe_batch(audios, languages)

    fake = Broken()
    service = await started(fake, workers=1)
    first = await occupy(service, fake)
    both = [asyncio.create_task(service.transcribe(np.zeros(n, dtype=np.float32))) for n in (2, 3)]
    await asyncio.sleep(0.02)
    fake.gate.set()
    assert (await first).text == "1"
    for job in both:
        with pytest.raises(ASRError, match="engine broke"):
            await job
    # The service goes on serving.
    assert (await service.transcribe(np.zeros(4, dtype=np.float32))).text == "4"
    service.close()


async def test_each_callers_language_reaches_the_recognizer_in_a_batch() -> None:
    fake = BatchRecorder()
    service = await started(fake, workers=1)
    first = await occupy(service, fake)
    waiting = [
        asyncio.create_task(service.transcribe(np.zeros(2, dtype=np.float32), language))
        for language in ("fr-FR", None)
    ]
    await asyncio.sleep(0.02)
    fake.gate.set()
    await asyncio.gather(first, *waiting)
    assert fake.batches[-1] == [2, 2]
    assert fake.languages[-2:] == ["fr-FR", None]
    assert await service.partial(np.zeros(3, dtype=np.float32), "de") is not None
    assert fake.languages[-1] == "de"
    service.close()


def test_a_batch_through_the_real_model_reads_like_one_clip_at_a_time() -> None:
    texts = [
        "Turn on the kitchen lights please.",
        "What is the weather like this weekend?",
        "Remind me to call my sister at noon.",
    ]
    clips = [to_float(piper_speech(text, deterministic=True)) for text in texts]
    recognizer = FasterWhisperRecognizer(ASRConfig())
    recognizer.load()
    alone = [recognizer.transcribe(clip).text for clip in clips]
    together = recognizer.transcribe_batch([*clips, np.zeros(0, dtype=np.float32)])
    assert [t.text for t in together] == [*alone, ""]
    for text, transcript in zip(texts, together[:3], strict=True):
        assert word_error_rate(text, transcript.text) <= 0.2, transcript.text
    assert recognizer.full_window_runs == 0


async def test_timed_segments_stream_and_a_caller_may_leave_mid_decode() -> None:
    """segments() yields the recognizer's segments; a caller cancelled while a thread decodes
    gets CancelledError (not "generator already executing"), and the generator is closed once
    that decode is over; partials then see the recognizer free again."""
    from voicefleet.asr.segments import SegmentOptions

    fake = GatedRecognizer()
    fake.gate.set()
    service = ASRService(ASRConfig(workers=1), recognizer=fake)
    await service.start()
    found = [s async for s in service.segments(np.zeros(1600, np.float32), SegmentOptions())]
    assert [(s.text, s.end) for s in found] == [("1600", 0.1)]

    fake.gate.clear()

    async def consume() -> list[object]:
        return [s async for s in service.segments(np.zeros(800, np.float32), SegmentOptions())]

    task = asyncio.create_task(consume())
    await wait_until(lambda: fake.running == 1)
    # While a file decodes, the one lane is taken: a partial is dropped, never queued.
    assert await service.partial(np.zeros(160, np.float32)) is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The thread still decodes: the recognizer is still busy for partials.
    assert await service.partial(np.zeros(160, np.float32)) is None
    fake.gate.set()
    await wait_until(lambda: fake.running == 0)
    await asyncio.sleep(0.05)  # the decode's step ends; the generator closes after it
    partial = await service.partial(np.zeros(320, np.float32))
    assert partial is not None and partial.text == "320"
    service.close()
