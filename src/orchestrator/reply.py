"""One reply of the agent: responder text -> the fleet -> the person, paced in real time.

A reply is passive: it produces agent text, audio frames and its own audio_start / audio_end
events for the transport, and reports progress (audible, ended) as turn events; it never calls
into the session. The turn controller commits, holds, releases or cancels it; each of those
takes effect before the next frame leaves.

A reply can start held (speculatively, before the end of the person's turn is certain): its
events and frames wait for `commit()`, and `cancel()` drops it without a sound. Once committed,
frames leave at real time plus a small lead (the client's jitter buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from opentelemetry import trace

from voicefleet import tracing
from voicefleet.audio.pacing import PacingClock
from voicefleet.fleet.speaker import ReplyStream, Speaker
from voicefleet.orchestrator.narration import Narration
from voicefleet.orchestrator.protocol import AgentText, AudioEnd, AudioStart, ServerMessage
from voicefleet.orchestrator.services import SessionSink
from voicefleet.orchestrator.turn_events import ReplyAudible, ReplyEnded, ReplyText, TurnEvent

log = logging.getLogger(__name__)


@dataclass
class ReplyTimings:
    """Wall-clock marks of one reply (perf_counter seconds) and what went wrong."""

    text_ready: float | None = None
    first_frame: float | None = None
    first_sent: float | None = None
    frames_sent: int = 0
    underruns: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (error code, message)


class Reply:
    """Runs one reply until it ends or is cancelled."""

    def __init__(
        self,
        reply_id: int,
        turn: int,
        texts: AsyncIterator[str],
        speaker: Speaker,
        sink: SessionSink,
        report: Callable[[TurnEvent], None],
        *,
        lead_s: float,
        committed: bool,
        speech_end_at: float | None = None,
    ) -> None:
        self.id = reply_id
        self.turn = turn
        self.timings = ReplyTimings()
        self.speech_end_at: float | None = None
        self.cancelled = False
        self._narration = Narration(texts)
        self._sink = sink
        self._report = report
        self._lead_s = lead_s
        self._committed = asyncio.Event()
        self._playing = asyncio.Event()
        self._playing.set()
        self._held_events: list[ServerMessage] = []
        self._held_since_frame = False
        if committed:
            self._committed.set()
        self._created_at = time.perf_counter()
        # The turn's trace: from the end of the person's speech to the reply's last frame. The
        # reply's worker calls run in tasks made here, so they carry it to the worker.
        self.span = tracing.tracer().start_span(
            "voicefleet.turn",
            start_time=tracing.epoch_ns(speech_end_at) if speech_end_at is not None else None,
            attributes={"voicefleet.turn": turn, "voicefleet.session": speaker.session_id},
        )
        with tracing.current(self.span):
            self.stream: ReplyStream = speaker.stream(self._narrated(), f"turn {turn}")
        self._sender = asyncio.create_task(self._send())

    @property
    def heard(self) -> str:
        """The reply's text sent to the person (whole segments)."""
        return self.stream.heard

    @property
    def remembered(self) -> str:
        """What the history records of the reply: `heard` without the filler phrases."""
        stream = self.stream
        return self._narration.unfilled(stream.text[: stream.played_end])

    @property
    def failovers(self) -> int:
        """Workers that failed while speaking this reply."""
        return self.stream.failovers

    def commit(self, turn: int, speech_end_at: float | None) -> None:
        """The turn is confirmed: release held events and frames."""
        self.turn = turn
        self.speech_end_at = speech_end_at
        self._committed.set()

    def interject(self, phrase: str) -> None:
        """Say a filler phrase next (the responder is waiting)."""
        if not self.cancelled:
            self._narration.interject(phrase)

    async def wait_committed(self) -> None:
        """Until the reply may be heard (a speculative one waits for its turn's end)."""
        await self._committed.wait()

    def hold(self) -> None:
        """No further frame leaves (possible barge-in); the worker is paused too."""
        self._playing.clear()
        self._held_since_frame = True
        self.stream.pause()

    def release(self) -> None:
        """Frames flow again from where they stopped."""
        self.stream.resume()
        self._playing.set()

    def cancel(self) -> None:
        """Drop the reply at once: nothing more is sent; the worker is stopped meanwhile."""
        if self.cancelled:
            return
        self.cancelled = True
        self.stream.stop()
        self._sender.cancel()
        self._end_span("cancelled")

    async def wait(self) -> None:
        """Until the reply's tasks have ended (the worker told to stop, if cancelled)."""
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        await self.stream.aclose() if self.cancelled else await self.stream.wait()

    async def _emit(self, message: ServerMessage) -> None:
        if self.cancelled:
            return
        if not self._committed.is_set():
            self._held_events.append(message)
            return
        await self._release_held()
        await self._sink.send_event(message)

    async def _release_held(self) -> None:
        held, self._held_events = self._held_events, []
        for message in held:
            await self._sink.send_event(message)

    async def _narrated(self) -> AsyncIterator[str]:
        """Responder text (and fillers), announced as agent_text as it goes to TTS."""
        first = True
        # Closed when this generator is (a cancelled reply): that closes the responder's
        # stream, and its HTTP request, now.
        pieces = self._narration.pieces()
        try:
            async for text, filler in pieces:
                if first and not filler:
                    first = False
                    self._report(ReplyText(self.id))
                if self.timings.text_ready is None:
                    self.timings.text_ready = time.perf_counter()
                shown = text.strip() if filler else text
                await self._emit(AgentText(text=shown, turn=self.turn, filler=filler))
                yield text
        except Exception as error:
            # What the responder said before failing is still spoken; the failure is reported.
            log.warning("reply %d: responder failed: %s", self.turn, error)
            self.timings.errors.append(("responder_failed", str(error)))
        finally:
            with contextlib.suppress(Exception):
                await pieces.aclose()
        await self._emit(AgentText(text="", turn=self.turn, final=True))

    async def _send(self) -> None:
        completed = False
        try:
            await self._committed.wait()
            await self._release_held()
            clock = PacingClock(self._lead_s)
            while (frame := await self.stream.next_frame()) is not None:
                if self.timings.first_frame is None:
                    self.timings.first_frame = time.perf_counter()
                await self._playing.wait()
                delay = clock.delay()
                if delay > 0:
                    await asyncio.sleep(delay)
                    await self._playing.wait()
                elif (
                    clock.late_s > 0.005 and self.timings.frames_sent and not self._held_since_frame
                ):
                    # Synthesis fell behind real time: the person hears a gap.
                    self.timings.underruns += 1
                if not self.stream.wanted(frame):
                    continue  # dropped by a failover while it waited here
                if not self.timings.frames_sent:
                    self.timings.first_sent = time.perf_counter()
                    await self._sink.send_event(AudioStart(turn=self.turn))
                    self._report(ReplyAudible(self.id))
                await self._sink.send_audio(frame.pcm)
                self.stream.played(frame)
                self._held_since_frame = False
                self.timings.frames_sent += 1
                clock.sent()
                if frame.final:
                    completed = True
                    break
            await self._finish(completed)
        except asyncio.CancelledError:
            if not self.cancelled:
                raise

    async def _finish(self, completed: bool) -> None:
        stream = self.stream
        if stream.error is not None:
            self.timings.errors.append((stream.error.code, stream.error.message))
        if stream.truncated:
            limit = stream.settings.max_reply_chars
            self.timings.errors.append(
                ("reply_truncated", f"the reply was cut at {limit} characters")
            )
        if self.timings.frames_sent:
            await self._sink.send_event(
                AudioEnd(self.turn, self.timings.frames_sent, stream.spoken)
            )
        self._end_span("completed" if completed else "ended")
        self._report(ReplyEnded(self.id, completed))

    def _end_span(self, outcome: str) -> None:
        """Close the turn's span, with its phases as child spans (their marks are known now)."""
        span, t = self.span, self.timings
        if not span.is_recording():
            return
        span.set_attribute("voicefleet.outcome", outcome)
        span.set_attribute("voicefleet.turn", self.turn)
        span.set_attribute("voicefleet.frames", t.frames_sent)
        if self.stream.worker_name:
            span.set_attribute("voicefleet.worker", self.stream.worker_name)
        parent = trace.set_span_in_context(span)
        now = time.perf_counter()
        phases = (
            ("voicefleet.responder", self._created_at, t.text_ready),
            ("voicefleet.tts_first_frame", t.text_ready, t.first_frame),
            ("voicefleet.playout", t.first_sent, now if t.first_sent is not None else None),
        )
        for name, begin, end in phases:
            if begin is not None and end is not None:
                phase = tracing.tracer().start_span(
                    name, context=parent, start_time=tracing.epoch_ns(begin)
                )
                phase.end(end_time=tracing.epoch_ns(end))
        for code, message in t.errors:
            span.add_event("error", {"code": code, "message": message})
        span.end()
