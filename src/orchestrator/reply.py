"""One reply of the agent: responder text -> TTS frames -> the person, paced in real time.

A reply can start speculatively (before the end of the person's turn is certain): its events and
frames are held until `commit()`, and `cancel()` drops it without a sound. Once committed,
frames leave at real time plus a small lead (the client's jitter buffer), so a barge-in pauses
or cancels with little audio already at the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from voicefleet.audio.pacing import PacingClock
from voicefleet.fleet.speaker import ReplySpeaker, SpeechFrame
from voicefleet.orchestrator.protocol import AgentText, ServerMessage

log = logging.getLogger(__name__)


@dataclass
class ReplyTimings:
    """Wall-clock marks of one reply (perf_counter seconds)."""

    text_ready: float | None = None
    first_frame: float | None = None
    first_sent: float | None = None
    frames_sent: int = 0
    underruns: int = 0
    failovers: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (error code, message)


class ReplyHooks:
    """What a reply tells its session (overridden by the pipeline)."""

    async def event(self, message: ServerMessage) -> None:
        """Send an event to the person."""

    async def audio(self, pcm: bytes) -> None:
        """Send one frame to the person."""

    async def first_audio(self) -> None:
        """The first frame is about to go out."""

    async def finished(self, completed: bool) -> None:
        """The reply ended: completed (final frame sent) or not (empty, failed, cancelled)."""


class Reply:
    """Runs one reply; the session commits, pauses, resumes or cancels it."""

    def __init__(
        self,
        turn: int,
        texts: AsyncIterator[str],
        speaker: ReplySpeaker,
        hooks: ReplyHooks,
        *,
        lead_s: float,
        committed: bool,
    ) -> None:
        self.turn = turn
        self.timings = ReplyTimings()
        self._texts = texts
        self._speaker = speaker
        self._hooks = hooks
        self._lead_s = lead_s
        self._committed = asyncio.Event()
        self._playing = asyncio.Event()
        self._playing.set()
        self._frames: asyncio.Queue[SpeechFrame | None] = asyncio.Queue()
        self._held_events: list[ServerMessage] = []
        self._paused_since_frame = False
        self.cancelled = False
        if committed:
            self._committed.set()
        self._producer = asyncio.create_task(self._produce())
        self._sender = asyncio.create_task(self._send())

    @property
    def committed(self) -> bool:
        """Whether the reply may be heard."""
        return self._committed.is_set()

    def commit(self) -> None:
        """The turn is confirmed: release held events and frames."""
        self._committed.set()

    def pause(self) -> None:
        """Stop forwarding frames at once (possible barge-in)."""
        self._playing.clear()
        self._paused_since_frame = True

    def resume(self) -> None:
        """Forward frames again from where they stopped."""
        self._playing.set()

    async def cancel(self) -> None:
        """Drop the reply: stop the worker, discard buffered audio, end both tasks."""
        self.cancelled = True
        await self._speaker.stop()
        for task in (self._producer, self._sender):
            task.cancel()
        await self.wait()

    async def wait(self) -> None:
        """Until the reply has ended one way or another."""
        for task in (self._producer, self._sender):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _emit(self, message: ServerMessage) -> None:
        if self.committed:
            for held in self._held_events:
                await self._hooks.event(held)
            self._held_events.clear()
            await self._hooks.event(message)
        else:
            self._held_events.append(message)

    async def _narrated(self) -> AsyncIterator[str]:
        """Responder text, announced as agent_text as it goes to TTS."""
        try:
            async for text in self._texts:
                if not text:
                    continue
                if self.timings.text_ready is None:
                    self.timings.text_ready = time.perf_counter()
                await self._emit(AgentText(text=text, turn=self.turn))
                yield text
        except Exception as error:
            # What the responder said before failing is still spoken; the failure is reported.
            log.warning("reply %d: responder failed: %s", self.turn, error)
            self.timings.errors.append(("responder_failed", str(error)))
        finally:
            # A cancelled reply closes the responder's stream (and its HTTP request) now.
            close = getattr(self._texts, "aclose", None)
            if close is not None:
                await close()
        await self._emit(AgentText(text="", turn=self.turn, final=True))

    async def _produce(self) -> None:
        try:
            async for frame in self._speaker.speak(self._narrated()):
                if self.timings.first_frame is None:
                    self.timings.first_frame = time.perf_counter()
                self._frames.put_nowait(frame)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("reply %d failed: %s", self.turn, error)
            self.timings.errors.append(("tts_failed", str(error)))
        finally:
            self.timings.failovers = self._speaker.failovers
            self._frames.put_nowait(None)

    async def _send(self) -> None:
        completed = False
        try:
            await self._committed.wait()
            for held in self._held_events:
                await self._hooks.event(held)
            self._held_events.clear()
            clock = PacingClock(self._lead_s)
            while (frame := await self._frames.get()) is not None:
                await self._playing.wait()
                delay = clock.delay()
                if delay > 0:
                    await asyncio.sleep(delay)
                    await self._playing.wait()
                elif (
                    clock.late_s > 0.005
                    and self.timings.frames_sent
                    and not self._paused_since_frame
                ):
                    # Synthesis fell behind real time: the person hears a gap.
                    self.timings.underruns += 1
                if not self.timings.frames_sent:
                    self.timings.first_sent = time.perf_counter()
                    await self._hooks.first_audio()
                await self._hooks.audio(frame.pcm)
                self._paused_since_frame = False
                self.timings.frames_sent += 1
                clock.sent()
                if frame.final:
                    completed = True
                    break
        finally:
            if not self.cancelled:
                await self._hooks.finished(completed)
