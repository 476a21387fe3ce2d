"""The fleet's stream owner against scripted workers: failover, commands across it, deadlines,
fault classification. The workers here are fakes speaking the ABI's frame contract (segment
index and text span per frame); the real worker is tested in tests/integration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.speaker import ReplyStream, Speaker, SpeakerSettings, SpeechFrame
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE
from voicefleet.tts.segmenter import TextSegmenter

TEXT = "Hello there, this is one. This is two. This is three. And this is four."
FRAMES_PER_SEGMENT = 3


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@dataclass
class FakeWorker:
    """A worker that speaks FRAMES_PER_SEGMENT frames per segment, or fails as told."""

    name: str
    die_after: int | None = None  # frames, then UNAVAILABLE
    hang_after: int | None = None  # frames, then silence forever
    end_after: int | None = None  # frames, then end without a final frame
    refuse: grpc.StatusCode | None = None  # Synthesize fails with this code at once
    control_hangs: bool = False
    log: list[str] = field(default_factory=list)
    text: str = ""
    paused: bool = False
    resumed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return f"{self.name}:1"

    async def start_session(self, session: str, model: str = "", **_: Any) -> None:
        self.log.append("start")

    async def end_session(self, session: str) -> None:
        self.log.append("end")

    async def control(self, session: str, command: int) -> None:
        self.log.append(tts_pb2.ControlCommand.Name(command).removeprefix("CONTROL_COMMAND_"))
        if self.control_hangs:
            await asyncio.Event().wait()
        self.paused = command == PAUSE
        if not self.paused:
            self.resumed.set()

    def synthesize(self, session: str, chunks: AsyncIterator[str]) -> FakeCall:
        self.log.append("synthesize")
        return FakeCall(self, chunks)


class FakeCall:
    def __init__(self, worker: FakeWorker, chunks: AsyncIterator[str]) -> None:
        self.worker = worker
        self.chunks = chunks
        self.cancelled = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    async def __aiter__(self) -> AsyncIterator[tts_pb2.AudioFrame]:
        worker = self.worker
        if worker.refuse is not None:
            raise rpc_error(worker.refuse, "refused")
        async for chunk in self.chunks:
            worker.log.append(f"chunk:{len(chunk)}")
            worker.text += chunk
        segmenter = TextSegmenter()
        segments = segmenter.push(worker.text) + segmenter.flush()
        sent = 0
        for index, segment in enumerate(segments):
            for position in range(FRAMES_PER_SEGMENT):
                if worker.die_after is not None and sent >= worker.die_after:
                    raise rpc_error(grpc.StatusCode.UNAVAILABLE, "worker died")
                if worker.hang_after is not None and sent >= worker.hang_after:
                    await asyncio.Event().wait()
                if worker.end_after is not None and sent >= worker.end_after:
                    return
                while worker.paused:
                    worker.resumed.clear()
                    await worker.resumed.wait()
                final = index == len(segments) - 1 and position == FRAMES_PER_SEGMENT - 1
                yield tts_pb2.AudioFrame(
                    pcm=bytes(1920),
                    sequence=sent,
                    final=final,
                    segment_index=index,
                    text_start=segment.start,
                    text_end=segment.end,
                )
                sent += 1
                await asyncio.sleep(0)


@dataclass
class FakeRecord:
    name: str
    address: str
    default_model: str = "fake-model"
    voices: dict[str, str] = field(default_factory=dict)
    resident_models: tuple[str, ...] = ("fake-model",)


class FakeRouter:
    def __init__(self, workers: list[FakeWorker]) -> None:
        self.workers = workers
        self.failed: list[str] = []
        self.observed: list[tuple[str, float]] = []

    def candidates(
        self, language: str = "", model: str = "", exclude: Any = (), voice: str = ""
    ) -> list[Any]:
        usable = [FakeRecord(w.name, w.address) for w in self.workers if w.name not in exclude]
        if not usable:
            raise NoWorkerAvailable("no TTS worker is registered")
        return usable

    def mark_failed(self, name: str) -> None:
        self.failed.append(name)

    def placed(self, name: str) -> None:
        pass

    def observe(self, name: str, first_audio_ms: float) -> None:
        self.observed.append((name, first_audio_ms))


class FakePool:
    def __init__(self, workers: list[FakeWorker]) -> None:
        self.by_address = {w.address: w for w in workers}

    def client(self, address: str) -> FakeWorker:
        return self.by_address[address]


def speaker_for(*workers: FakeWorker, **settings: Any) -> tuple[Speaker, FakeRouter]:
    router = FakeRouter(list(workers))
    speaker = Speaker(
        router,  # type: ignore[arg-type]
        FakePool(list(workers)),  # type: ignore[arg-type]
        "s1",
        settings=SpeakerSettings(**settings),
    )
    return speaker, router


async def texts(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


async def drain(stream: ReplyStream) -> list[SpeechFrame]:
    return [frame async for frame in stream.frames()]


def spoken(frames: list[SpeechFrame], text: str) -> list[str]:
    """The segments the frames speak, in order, one entry per run of frames."""
    out: list[str] = []
    last: int | None = None
    for frame in frames:
        if frame.start != last:
            out.append(text[frame.start : frame.end])
            last = frame.start
    return out


def positions(frames: list[SpeechFrame]) -> dict[int, list[int]]:
    """Per segment (by its start), the positions played: each once, in order, none missing."""
    out: dict[int, list[int]] = {}
    for frame in frames:
        out.setdefault(frame.start, []).append(frame.position)
    return out


def segments(text: str) -> list[str]:
    segmenter = TextSegmenter()
    return [s.text for s in segmenter.push(text) + segmenter.flush()]


async def test_failover_resends_from_the_incomplete_segment_and_nothing_is_heard_twice() -> None:
    # A dies after two whole segments and one frame of the third.
    a = FakeWorker("a", die_after=2 * FRAMES_PER_SEGMENT + 1)
    b = FakeWorker("b")
    speaker, router = speaker_for(a, b)
    stream = speaker.stream(texts(TEXT))
    while "synthesize" not in b.log:  # nothing played yet: the buffer holds A's frames
        await asyncio.sleep(0.001)
    frames = await drain(stream)
    third = TEXT.index("This is two.")
    assert b.text == TEXT[third:], "B gets exactly the text from the incomplete segment on"
    assert spoken(frames, TEXT) == segments(TEXT), "every segment once, in order"
    assert frames[-1].final and stream.error is None
    assert router.failed == ["a"] and stream.failovers == 1
    assert stream.heard == TEXT
    assert stream.spoken == " ".join(segments(TEXT)), "what the frames spoke: all, once"
    assert [name for name, _ in router.observed] == ["a", "b"], "first-frame latency per worker"
    await speaker.close()


async def test_a_paused_reply_opens_paused_on_the_next_worker() -> None:
    a = FakeWorker("a", die_after=2)
    b = FakeWorker("b")
    speaker, _ = speaker_for(a, b)
    stream = speaker.stream(texts(TEXT))
    first = await stream.next_frame()
    assert first is not None
    stream.pause()  # the person spoke over the agent
    while "synthesize" not in b.log:
        await asyncio.sleep(0.001)
    assert b.log[: b.log.index("synthesize")] == ["start", "PAUSE"], b.log
    await asyncio.sleep(0.05)
    assert not b.text or b.paused, "B holds its frames until RESUME"
    stream.resume()
    rest = await drain(stream)
    assert rest and rest[-1].final
    assert b.log.count("RESUME") == 1
    await speaker.close()


async def test_commands_go_to_the_worker_without_blocking_the_caller() -> None:
    hung = FakeWorker("a", control_hangs=True)
    speaker, _ = speaker_for(hung, control_timeout_s=0.2)
    stream = speaker.stream(texts(TEXT))
    assert await stream.next_frame() is not None
    loop = asyncio.get_running_loop()
    began = loop.time()
    stream.pause()
    stream.resume()
    stream.stop()
    assert loop.time() - began < 0.01, "pause/resume/stop never wait on the worker"
    assert await stream.next_frame() is None
    await asyncio.wait_for(stream.aclose(), 1.0)
    assert hung.log[-1] == "STOP", "only the latest wanted state is sent"


async def test_a_rejected_request_fails_the_reply_and_never_cools_the_worker() -> None:
    bad = FakeWorker("a", refuse=grpc.StatusCode.INVALID_ARGUMENT)
    other = FakeWorker("b")
    speaker, router = speaker_for(bad, other)
    stream = speaker.stream(texts(TEXT))
    assert await drain(stream) == []
    assert stream.error is not None and stream.error.code == "tts_rejected"
    assert router.failed == [] and "synthesize" not in other.log


async def test_a_full_worker_is_skipped_without_a_cool_down() -> None:
    full = FakeWorker("a", refuse=grpc.StatusCode.RESOURCE_EXHAUSTED)
    other = FakeWorker("b")
    speaker, router = speaker_for(full, other)
    frames = await drain(speaker.stream(texts(TEXT)))
    assert frames[-1].final and router.failed == []


async def test_a_stream_that_stalls_while_audio_is_owed_fails_over() -> None:
    hung = FakeWorker("a", hang_after=4)
    b = FakeWorker("b")
    speaker, router = speaker_for(hung, b, stall_timeout_s=0.3)
    stream = speaker.stream(texts(TEXT))
    loop = asyncio.get_running_loop()
    began = loop.time()
    frames = await drain(stream)
    assert frames[-1].final
    assert 0.3 <= loop.time() - began < 2.0
    assert stream.stalls == 1 and router.failed == ["a"]
    # The second segment was playing when A hung: B's frames for it continue where A's ended.
    assert spoken(frames, TEXT) == segments(TEXT)
    assert all(p == list(range(FRAMES_PER_SEGMENT)) for p in positions(frames).values())


async def test_a_paused_stream_is_never_a_stall() -> None:
    hung = FakeWorker("a", hang_after=2)
    speaker, router = speaker_for(hung, FakeWorker("b"), stall_timeout_s=0.2)
    stream = speaker.stream(texts(TEXT))
    assert await stream.next_frame() is not None
    stream.pause()
    await asyncio.sleep(0.6)
    assert router.failed == [] and stream.stalls == 0
    stream.stop()
    await stream.aclose()


async def test_a_stream_ended_without_its_final_frame_is_a_worker_fault() -> None:
    # e.g. someone else's STOP: the reply must not end as if complete.
    stopped = FakeWorker("a", end_after=4)
    b = FakeWorker("b")
    speaker, router = speaker_for(stopped, b)
    frames = await drain(speaker.stream(texts(TEXT)))
    assert frames[-1].final and router.failed == ["a"]
    assert spoken(frames, TEXT) == segments(TEXT)
    assert all(p == list(range(FRAMES_PER_SEGMENT)) for p in positions(frames).values())


async def test_long_text_is_sent_in_chunks_the_worker_accepts() -> None:
    worker = FakeWorker("a")
    speaker, _ = speaker_for(worker, max_chunk_chars=50)
    long = " ".join(f"Sentence number {i} is here." for i in range(40))
    await drain(speaker.stream(texts(long[:700], "   ", "\n", long[700:])))
    sizes = [int(entry.split(":")[1]) for entry in worker.log if entry.startswith("chunk:")]
    assert max(sizes) <= 50 and sum(sizes) == len(long) + 4
    assert worker.text == long[:700] + "   \n" + long[700:]


async def test_no_worker_is_a_clear_error() -> None:
    speaker, _ = speaker_for()
    stream = speaker.stream(texts(TEXT))
    assert await drain(stream) == []
    assert stream.error is not None and stream.error.code == "tts_failed"
    assert "no TTS worker is registered" in stream.error.message


@pytest.mark.parametrize("cut", [0, 1, 2])
async def test_heard_is_whole_segments_up_to_the_last_played(cut: int) -> None:
    worker = FakeWorker("a")
    speaker, _ = speaker_for(worker)
    stream = speaker.stream(texts(TEXT))
    played = 0
    while (frame := await stream.next_frame()) is not None:
        stream.played(frame)
        played += 1
        if played == cut * FRAMES_PER_SEGMENT + 1:
            break
    stream.stop()
    assert stream.heard == TEXT[: TEXT.index(segments(TEXT)[cut]) + len(segments(TEXT)[cut])]
    await stream.aclose()


async def test_spoken_names_each_played_segment_once_and_misses_a_skipped_one() -> None:
    speaker, _ = speaker_for(FakeWorker("a"))
    stream = speaker.stream(texts(TEXT))
    while not stream.input_ended:
        await asyncio.sleep(0.001)
    stream.stop()
    parts = segments(TEXT)
    spans = [(TEXT.index(part), TEXT.index(part) + len(part)) for part in parts]

    def frame(index: int, position: int) -> SpeechFrame:
        start, end = spans[index]
        return SpeechFrame(b"", False, index, start, end, 0, position)

    last = len(parts) - 1
    for index in (0, 0, *range(2, last + 1)):  # segment 1 never reached the person
        stream.played(frame(index, 0))
    assert stream.spoken == " ".join([parts[0], *parts[2:]])
    assert stream.heard == TEXT, "heard is a prefix: it cannot tell"
    await stream.aclose()


class SlowStartWorker(FakeWorker):
    """A worker whose StartSession is still in flight when the caller gives up."""

    async def start_session(self, session: str, model: str = "", **_: Any) -> None:
        self.log.append("start")
        await asyncio.Event().wait()


async def test_a_start_session_cancelled_mid_call_is_ended_on_the_worker() -> None:
    """Found by tests/fuzz: a client that hung up while its first reply's StartSession was in
    flight left that worker session open (a slot held until the worker's idle reaper), because
    the speaker only remembers a session once StartSession has returned."""
    worker = SlowStartWorker("w1")
    speaker, _router = speaker_for(worker)
    opening = asyncio.ensure_future(speaker.open(set()))
    await asyncio.sleep(0.01)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await speaker.close()
    assert worker.log == ["start", "end"]


async def test_a_start_session_that_times_out_is_ended_on_the_worker() -> None:
    worker = SlowStartWorker("w1")
    speaker, _router = speaker_for(worker, start_timeout_s=0.05)
    with pytest.raises(NoWorkerAvailable):
        await speaker.open(set())
    await speaker.close()
    assert worker.log == ["start", "end"]
