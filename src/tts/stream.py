"""One Synthesize call: text chunks in, paced 20 ms frames out, obeying PAUSE/RESUME/STOP.

Three cooperating parts:
- the text reader validates chunks and cuts them into segments as they arrive;
- the renderer synthesizes each segment on a worker thread and turns it into frames
  (OutputChain), handing frames to the event loop as soon as each adapter chunk is done. Each
  segment is due when the listener would run out of audio without it (the synthesis threads
  take the earliest first: scheduling.py); a paced reply's later segments wait until they are
  due within `render_ahead_ms`;
- the sender (the response generator) releases frames no more than `max_lead_ms` ahead of real
  time, and checks PAUSE/STOP immediately before each frame, so a command takes effect on the
  next frame boundary however much audio is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from voicefleet.audio.format import FRAME_MS, FRAME_SAMPLES, OUTPUT_SAMPLE_RATE
from voicefleet.audio.joins import trim_join_edges
from voicefleet.audio.output import OutputChain
from voicefleet.audio.pacing import PacingClock
from voicefleet.rpc.generated import tts_pb2
from voicefleet.tts.adapters.base import TTSAdapter
from voicefleet.tts.errors import InvalidRequest, SynthesisFailed, WorkerError
from voicefleet.tts.scheduling import DeadlineExecutor
from voicefleet.tts.segmenter import FirstSegment, Segment, TextSegmenter
from voicefleet.tts.session import StreamControl, WorkerSession
from voicefleet.tts.stats import WorkerStats

log = logging.getLogger(__name__)
_FRAME_S = FRAME_MS / 1000


@dataclass(frozen=True)
class StreamSettings:
    """Per-stream limits and output settings (from the worker config)."""

    max_lead_ms: int
    render_ahead_ms: int | None
    # How long a new reply's first segment may wait for a started reply's next segment whose
    # listener would otherwise run out of audio sooner (SynthesisStream._deadline).
    first_segment_slack_s: float
    max_chunk_chars: int
    max_stream_chars: int
    target_lufs: float
    ceiling_dbfs: float
    first_segment: FirstSegment


@dataclass(frozen=True)
class _Frame:
    pcm: bytes
    segment: int
    span: tuple[int, int]  # the segment's characters in the stream's input
    final: bool = False


class _Wake:
    """Queue item that only wakes the sender (STOP or an error)."""


class SynthesisStream:
    """Runs one Synthesize call for one session."""

    def __init__(
        self,
        session: WorkerSession,
        adapter_for: Callable[[str], TTSAdapter],
        executor: DeadlineExecutor,
        settings: StreamSettings,
        stats: WorkerStats,
    ) -> None:
        self.session = session
        self.control = StreamControl(stats.record_control)
        self.frames_sent = 0
        self._adapter_for = adapter_for
        self._executor = executor
        self._settings = settings
        self._stats = stats
        self._loop = asyncio.get_running_loop()
        self._segments: asyncio.Queue[Segment | None] = asyncio.Queue()
        self._frames: asyncio.Queue[_Frame | _Wake] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._error: WorkerError | None = None
        self._first_text_at: float | None = None
        self._first_frame_sent = asyncio.Event()
        self._first_sent_at: float | None = None  # the executor's clock
        self._rendered_s = 0.0  # audio of the segments rendered so far
        self._waiting = 0  # segments queued, not yet taken by the renderer
        self._counted = 0  # this stream's share of stats.segments_due
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def state(self) -> tts_pb2.SessionState.ValueType:
        """STREAMING or PAUSED."""
        return (
            tts_pb2.SESSION_STATE_PAUSED if self.control.paused else tts_pb2.SESSION_STATE_STREAMING
        )

    def stop(self) -> None:
        """STOP: drop pending text and audio; the sender ends the stream cleanly."""
        self.control.stop()
        self._cancelled.set()
        self._frames.put_nowait(_Wake())

    def abort(self, error: WorkerError) -> None:
        """End the stream with an error status (the drain's end), even while paused."""
        self._fail(error)
        self.control.changed.set()

    async def run(
        self, first: tts_pb2.TextChunk, rest: AsyncIterator[tts_pb2.TextChunk]
    ) -> AsyncIterator[tts_pb2.AudioFrame]:
        """The response stream of Synthesize."""
        self._stats.stream_started()
        self._tasks = [
            asyncio.create_task(self._read_text(first, rest)),
            asyncio.create_task(self._render()),
        ]
        try:
            async for frame in self._send():
                yield frame
        finally:
            self._cancelled.set()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # Segments never rendered leave the worker's queue with the stream.
            self._stats.segments_due -= self._counted
            self._counted = 0
            self._stats.stream_ended()

    def _fail(self, error: WorkerError) -> None:
        if self._error is None:
            self._error = error
        self._cancelled.set()
        self._frames.put_nowait(_Wake())

    # -- text reader ---------------------------------------------------------------------

    async def _read_text(
        self, first: tts_pb2.TextChunk, rest: AsyncIterator[tts_pb2.TextChunk]
    ) -> None:
        segmenter = TextSegmenter(first_segment=self._settings.first_segment)
        expected, total = 0, 0
        chunk: tts_pb2.TextChunk | None = first
        try:
            while chunk is not None:
                self._check_chunk(chunk, expected, total)
                expected += 1
                total += len(chunk.text)
                if self._first_text_at is None and chunk.text.strip():
                    self._first_text_at = time.perf_counter()
                self._queue_segments(segmenter.push(chunk.text))
                if chunk.end_of_input:
                    break
                chunk = await anext(rest, None)
            # A client that closes its side without end_of_input still gets its audio.
            self._queue_segments(segmenter.flush())
            self._segments.put_nowait(None)
        except WorkerError as error:
            self._fail(error)

    def _check_chunk(self, chunk: tts_pb2.TextChunk, expected: int, total: int) -> None:
        limits = self._settings
        if chunk.session_id != self.session.id:
            raise InvalidRequest(
                f"chunk {chunk.sequence} is for session {chunk.session_id!r}, "
                f"this stream is {self.session.id!r}"
            )
        if chunk.sequence != expected:
            raise InvalidRequest(
                f"chunk sequence {chunk.sequence} out of order (expected {expected})"
            )
        if not chunk.text.strip() and not chunk.end_of_input:
            raise InvalidRequest(f"chunk {chunk.sequence} has no text and does not end the input")
        if len(chunk.text) > limits.max_chunk_chars:
            raise InvalidRequest(
                f"chunk {chunk.sequence} has {len(chunk.text)} characters "
                f"(max {limits.max_chunk_chars})"
            )
        if total + len(chunk.text) > limits.max_stream_chars:
            raise InvalidRequest(f"stream text exceeds {limits.max_stream_chars} characters")

    def _queue_segments(self, segments: list[Segment]) -> None:
        for segment in segments:
            self._waiting += 1
            self._segments.put_nowait(segment)
        self._recount()

    def _recount(self) -> None:
        """Publish how many of this stream's queued segments are due: all of them when it
        renders everything at once; none when its later segments wait for their listener
        (render_ahead_ms: each goes to a thread when needed, and waits there if none is free,
        which `stats.waiting_for_thread` counts)."""
        due = 0 if self._renders_ahead else self._waiting
        self._stats.segments_due += due - self._counted
        self._counted = due

    @property
    def _renders_ahead(self) -> bool:
        """Later segments wait until the listener has render_ahead_ms of audio left."""
        return self._settings.render_ahead_ms is not None and not self.session.unpaced

    # -- renderer ------------------------------------------------------------------------

    async def _render(self) -> None:
        chain: OutputChain | None = None
        index = 0
        span = (0, 0)
        joined = False  # the previous segment stopped mid-sentence: this one goes straight on
        while (segment := await self._segments.get()) is not None:
            self._waiting -= 1
            self._recount()
            if index == 1:
                # Two cores: let the first frame leave before the next segment takes the CPU.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._first_frame_sent.wait()
            if index >= 1:
                await self._until_needed()
            adapter = self._adapter_for(self.session.model_id)
            if chain is None or chain.native_rate != adapter.sample_rate:
                chain = self._new_chain(adapter, chain, index, span)
            span = (segment.start, segment.end)
            try:
                self._rendered_s += await asyncio.wrap_future(
                    self._executor.submit_due(
                        self._deadline(index),
                        self._render_segment,
                        adapter,
                        chain,
                        segment,
                        index,
                        joined,
                    )
                )
            except WorkerError as error:
                self._fail(error)
                return
            except Exception as error:
                log.exception("session %s: synthesis failed", self.session.id)
                self._fail(SynthesisFailed(f"synthesis failed on segment {index}: {error}"))
                return
            index += 1
            joined = segment.continues
        tail = chain.finish() if chain is not None else [bytes(FRAME_SAMPLES * 2)]
        last = len(tail) - 1
        for position, pcm in enumerate(tail):
            self._frames.put_nowait(_Frame(pcm, max(index - 1, 0), span, final=position == last))

    async def _until_needed(self) -> None:
        """A paced stream's next segment waits until its listener has `render_ahead_ms` of
        audio left (a STOP or a failure ends the wait)."""
        ahead_ms = self._settings.render_ahead_ms
        if ahead_ms is None or not self._renders_ahead:
            return
        # Paused, the listener plays nothing: this keeps waiting. A STOP cancels the task.
        while True:
            wait_s = self._unsent_s() - ahead_ms / 1000
            if wait_s <= 0:
                return
            await asyncio.sleep(max(wait_s, _FRAME_S))

    def _unsent_s(self) -> float:
        """Audio rendered but not yet sent: the least the listener still has to play."""
        return max(0.0, self._rendered_s - self.frames_sent * _FRAME_S)

    def _deadline(self, index: int) -> float:
        """When the listener runs out of audio without segment `index`: for a later one, once
        what was rendered before it and not yet sent has played; for the first, the slack.

        A late first segment costs the listener waiting time; a late later one, a gap in
        speech: a started reply's next segment goes before a new reply's first unless its
        listener has more than `first_segment_slack_s` of audio left. A reply's first segment
        is 0.5-1.5 s of speech, so its next one is queued with about that much left: with a
        slack below that, a burst of new replies (and, under load, they keep coming) overtakes
        it and the reply stops mid-sentence.

        An unpaced stream sends every frame as soon as it is made, so nothing is unsent: its
        listener is taken to play from the first frame on, in real time, and to run dry once
        all that was rendered has played. A one-shot request far ahead of real time then
        yields to a live reply's first segment instead of always going first.
        """
        now = self._executor.clock()
        if index == 0:
            return now + self._settings.first_segment_slack_s
        if self.session.unpaced and self._first_sent_at is not None:
            return self._first_sent_at + self._rendered_s
        return now + self._unsent_s()

    def _new_chain(
        self, adapter: TTSAdapter, old: OutputChain | None, index: int, span: tuple[int, int]
    ) -> OutputChain:
        if old is not None:  # a RELOAD changed the native rate: close the old chain cleanly
            for pcm in old.finish():
                self._frames.put_nowait(_Frame(pcm, max(index - 1, 0), span))
        settings = self._settings
        return OutputChain(adapter.sample_rate, settings.target_lufs, settings.ceiling_dbfs)

    def _render_segment(
        self, adapter: TTSAdapter, chain: OutputChain, segment: Segment, index: int, joined: bool
    ) -> float:
        """Worker thread: synthesize one segment, handing frames over chunk by chunk; returns
        the seconds of audio rendered."""
        started = time.perf_counter()
        audio_s = 0.0
        text = segment.text
        span = (segment.start, segment.end)
        synthesized = adapter.synthesize(text, self.session.options)
        # A join inside a sentence keeps only a trace of the silence around it.
        chunks = trim_join_edges(
            synthesized, adapter.sample_rate, lead=joined, trail=segment.continues
        )
        for chunk in chunks:
            if self._cancelled.is_set():
                return audio_s
            if audio_s == 0.0 and log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "session %s segment %d: %.1f ms to first chunk (%r)",
                    self.session.id,
                    index,
                    (time.perf_counter() - started) * 1000,
                    text[:40],
                )
            audio_s += chunk.size / adapter.sample_rate
            frames = [_Frame(pcm, index, span) for pcm in chain.render(chunk)]
            self._loop.call_soon_threadsafe(self._deliver, frames)
        self._stats_later(time.perf_counter() - started, audio_s)
        return audio_s

    def _stats_later(self, compute_s: float, audio_s: float) -> None:
        self._loop.call_soon_threadsafe(self._stats.record_synthesis, compute_s, audio_s)

    def _deliver(self, frames: list[_Frame]) -> None:
        if self._cancelled.is_set():
            return
        for frame in frames:
            self._frames.put_nowait(frame)

    # -- sender --------------------------------------------------------------------------

    async def _send(self) -> AsyncIterator[tts_pb2.AudioFrame]:
        clock = PacingClock(self._settings.max_lead_ms / 1000)
        while True:
            item = await self._next_frame()
            if not await self._sendable(clock):
                return
            if isinstance(item, _Wake):
                continue
            yield tts_pb2.AudioFrame(
                session_id=self.session.id,
                sequence=self.frames_sent,
                pcm=item.pcm,
                sample_rate=OUTPUT_SAMPLE_RATE,
                frame_ms=FRAME_MS,
                final=item.final,
                segment_index=item.segment,
                text_start=item.span[0],
                text_end=item.span[1],
            )
            if self.frames_sent == 0:
                self._first_sent_at = self._executor.clock()
                self._first_frame_sent.set()
                if self._first_text_at is not None:
                    elapsed_ms = (time.perf_counter() - self._first_text_at) * 1000
                    self._stats.record_first_audio(elapsed_ms)
                    log.debug(
                        "session %s: first frame %.1f ms after text", self.session.id, elapsed_ms
                    )
            self.frames_sent += 1
            self.session.frames_sent += 1
            self._stats.frame_sent()
            clock.sent()
            if item.final:
                return

    async def _next_frame(self) -> _Frame | _Wake:
        """The next queued frame; while none is queued the sender is idle (a PAUSE or STOP then
        holds nothing back)."""
        if not self._frames.empty():
            return self._frames.get_nowait()
        self.control.idle = True
        try:
            return await self._frames.get()
        finally:
            self.control.idle = False

    async def _sendable(self, clock: PacingClock) -> bool:
        """Wait out PAUSE and pacing; False once stopped. Raises the stream's error."""
        control = self.control
        while True:
            control.checkpoint()
            control.changed.clear()
            if self._error is not None:
                raise self._error
            if control.stopped:
                return False
            if control.paused:
                await control.changed.wait()
                continue
            delay = 0.0 if self.session.unpaced else clock.delay()
            if delay <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await control.changed.wait()
