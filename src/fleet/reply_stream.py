"""One reply through the fleet: the `ReplyStream` owns its worker stream and every command.

The reply's text streams to the routed worker as it arrives; frames stream back, each saying
which characters of the reply it speaks (tts.proto `text_start`/`text_end`). Every command for
the reply (PAUSE, RESUME, STOP) goes through its ReplyStream, which applies the latest wanted
state to whichever worker speaks now, never blocking the caller, and carries it across a
failover: a reply paused when its worker dies is opened paused on the next one.

Failover: when a worker fails (error, deadline, a stream that stops delivering while audio is
owed, or one that ends without its final frame), the frames of its last, incomplete segment
that were not played yet are dropped, and the next worker gets the reply's text from that
segment's first character on. Segments fully received keep playing. If the person had heard
part of that segment, the next worker's frames for it are skipped up to the same position
(the same model speaks the same text at nearly the same length), so nothing is heard twice and
nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from voicefleet.fleet.attempt import Attempt
from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.faults import Fault, classify, describe
from voicefleet.fleet.speech import SpeakerSettings, SpeechFailed, SpeechFrame, WorkerSession
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE, RESUME, STOP

log = logging.getLogger(__name__)


class Workers(Protocol):
    """Where a reply's worker sessions come from (the session's Speaker)."""

    session_id: str
    settings: SpeakerSettings

    async def open(self, exclude: set[str]) -> WorkerSession:
        """A worker session on the best worker not excluded."""

    def forget(self, worker: WorkerSession, *, end: bool) -> None:
        """Stop using a worker session (ending it there in the background if `end`)."""

    def failed(self, worker: WorkerSession) -> None:
        """The worker failed mid-reply: cool it down."""

    def observed(self, worker: WorkerSession, first_audio_ms: float) -> None:
        """The worker's first frame came this long after its first text."""


class ReplyStream:
    """Speaks one reply's text through the fleet: the one owner of its worker stream."""

    def __init__(self, speaker: Workers, texts: AsyncIterator[str], label: str = "") -> None:
        self.speaker = speaker
        self.name = f"session {speaker.session_id}" + (f" {label}" if label else "")
        self.settings = speaker.settings
        self.text = ""
        self.input_ended = False
        self.truncated = False
        self.failovers = 0
        self.stalls = 0
        self.error: SpeechFailed | None = None
        self.played_end = 0  # the reply's text up to here was sent to the person
        self._last_played: tuple[int, int] = (-1, -1)  # (segment start, position)
        self._spoken: list[str] = []  # text of the played segments, in play order
        self.worker_name: str | None = None
        self.paused = False
        self.stopped = False
        self._frames: deque[SpeechFrame] = deque()
        self._dropped: set[tuple[int, int]] = set()
        self._done = False
        self._wake_frames = asyncio.Event()
        self._wake_text = asyncio.Event()
        self._current: Attempt | None = None
        self._resumed_at = time.monotonic()
        self._control: asyncio.Task[None] | None = None
        self._feeder = asyncio.create_task(self._feed(texts))
        self._runner = asyncio.create_task(self._run())

    # -- the consumer's side -------------------------------------------------------------

    async def next_frame(self) -> SpeechFrame | None:
        """The next frame to play; None once the reply has no more (see `error`)."""
        while True:
            while self._frames:
                frame = self._frames.popleft()
                if self.wanted(frame):
                    return frame
            if self._done:
                return None
            self._wake_frames.clear()
            await self._wake_frames.wait()

    def wanted(self, frame: SpeechFrame) -> bool:
        """False for a frame dropped by a failover (or after STOP): do not play it."""
        return not self.stopped and (frame.attempt, frame.segment) not in self._dropped

    def played(self, frame: SpeechFrame) -> None:
        """The frame reached the person: its segment counts as said."""
        if frame.end > self.played_end:  # a segment not spoken before (nor its start)
            self._spoken.append(self.text[max(frame.start, self.played_end) : frame.end])
        self.played_end = max(self.played_end, frame.end)
        self._last_played = (frame.start, frame.position)

    @property
    def heard(self) -> str:
        """The reply's text the person was sent, whole segments (a cut one counts whole)."""
        return self.text[: self.played_end].strip()

    @property
    def spoken(self) -> str:
        """What the played frames spoke, segment by segment in play order, each once.

        Unlike `heard` (a prefix), this skips text no frame spoke: a segment lost in a
        failover is missing here, so comparing it with `text` checks nothing was lost.
        """
        return " ".join(piece.strip() for piece in self._spoken if piece.strip())

    async def frames(self) -> AsyncIterator[SpeechFrame]:
        """Every frame to play, each counted as played once the next is asked for."""
        while (frame := await self.next_frame()) is not None:
            yield frame
            self.played(frame)

    # -- commands (never block the caller) -----------------------------------------------

    def pause(self) -> None:
        """Hold the worker's frames (and any next worker's, across a failover)."""
        if not self.stopped and not self.paused:
            self.paused = True
            self._apply()

    def resume(self) -> None:
        """Continue exactly where PAUSE held it."""
        if not self.stopped and self.paused:
            self.paused = False
            self._resumed_at = time.monotonic()
            self._apply()

    def stop(self) -> None:
        """Drop the rest of the reply: STOP the worker (in the background) and end at once."""
        if self.stopped:
            return
        self.stopped = True
        self._finish()
        self._apply()

    async def aclose(self) -> None:
        """Stop, and wait (bounded by the control deadline) until the worker was told."""
        self.stop()
        if self._control is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait({self._control}, timeout=self.settings.control_timeout_s * 2)
        await self.wait()

    async def wait(self) -> None:
        """Until the stream's tasks have ended."""
        for task in (self._runner, self._feeder):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _apply(self) -> None:
        if self._control is None or self._control.done():
            self._control = asyncio.create_task(self._send_commands())

    async def _send_commands(self) -> None:
        """Bring the current worker to the wanted state, sending only the latest command."""
        while (attempt := self._current) is not None:
            wanted = STOP if self.stopped else PAUSE if self.paused else RESUME
            if attempt.commanded == wanted or (attempt.commanded is None and wanted == RESUME):
                break
            attempt.commanded = wanted
            worker = attempt.worker
            try:
                async with asyncio.timeout(self.settings.control_timeout_s):
                    await worker.client.control(worker.session, wanted)
            except Exception as error:  # a dead or hung worker: the stall watch fails it over
                log.warning(
                    "%s: %s to %s failed: %s",
                    self.name,
                    tts_pb2.ControlCommand.Name(wanted),
                    worker.name,
                    describe(error),
                )
        if self.stopped:
            self._runner.cancel()

    # -- the text ------------------------------------------------------------------------

    async def text_changed(self) -> None:
        """Until more text arrives or the input ends."""
        self._wake_text.clear()
        await self._wake_text.wait()

    async def _feed(self, texts: AsyncIterator[str]) -> None:
        limit = self.settings.max_reply_chars
        try:
            async for text in texts:
                if not text:
                    continue
                room = limit - len(self.text)
                if len(text) > room:
                    self.text += text[: max(room, 0)]
                    self.truncated = True
                    break
                self.text += text
                self._wake_text.set()
        finally:
            # Whatever ends the text (even an error, reported by its owner) ends the input.
            self.input_ended = True
            self._wake_text.set()
            if self.truncated:
                close = getattr(texts, "aclose", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()

    # -- the worker streams --------------------------------------------------------------

    def _finish(self) -> None:
        self._done = True
        self._wake_frames.set()

    async def _run(self) -> None:
        excluded: set[str] = set()
        base, skip = 0, 0
        reopened = False
        try:
            while not self.stopped:
                try:
                    worker = await self.speaker.open(excluded)
                except SpeechFailed as error:
                    self.error = error
                    return
                except NoWorkerAvailable as error:
                    self.error = SpeechFailed.unroutable(error)
                    return
                attempt = Attempt(self, worker, base, skip)
                self._current = attempt
                self.worker_name = worker.name
                try:
                    await self._speak(attempt)
                    return
                except Exception as error:
                    if self.stopped:
                        return
                    base, skip = self._recover(attempt)
                    fault = classify(error, session_known=True)
                    if fault is Fault.SESSION_GONE and not attempt.received and not reopened:
                        # The worker ended our idle session (its reaper): open a new one there.
                        reopened = True
                        self.speaker.forget(worker, end=False)
                        continue
                    if fault is Fault.REQUEST:
                        self.error = SpeechFailed(
                            "tts_rejected",
                            f"worker {worker.name} refused the reply: {describe(error)}",
                        )
                        return
                    excluded.add(worker.name)
                    self.speaker.forget(worker, end=True)
                    if fault is Fault.WORKER:
                        self.failovers += 1
                        self.speaker.failed(worker)
                    log.warning(
                        "%s: %s on worker %s (%s); re-routing from segment %d",
                        self.name,
                        "stall" if isinstance(error, TimeoutError) else f"{fault.value} fault",
                        worker.name,
                        describe(error),
                        max(attempt.segment, 0),
                    )
        finally:
            self._current = None
            self._finish()

    async def _speak(self, attempt: Attempt) -> None:
        """One worker stream: returns at the final frame or STOP; raises on any failure."""
        worker = attempt.worker
        if self.paused:  # held across a failover: the new worker starts paused
            attempt.commanded = PAUSE
            async with asyncio.timeout(self.settings.control_timeout_s):
                await worker.client.control(worker.session, PAUSE)
        self._apply()  # a command that arrived while the stream opened
        call = worker.client.synthesize(worker.session, attempt.chunks())
        reader = asyncio.create_task(attempt.read(call, self._deliver))
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=0.1)
                if not reader.done() and (why := attempt.stalled(self.paused, self._resumed_at)):
                    self.stalls += 1
                    raise TimeoutError(why)
            reader.result()
            if not attempt.final and not self.stopped:
                raise ConnectionError("the stream ended without its final frame")
        finally:
            reader.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _deliver(self, frame: SpeechFrame) -> None:
        attempt = self._current
        if attempt is not None and attempt.received == 1 and attempt.text_sent_at is not None:
            waited_ms = (time.monotonic() - attempt.text_sent_at) * 1000
            self.speaker.observed(attempt.worker, waited_ms)
        self._frames.append(frame)
        self._wake_frames.set()

    def _recover(self, attempt: Attempt) -> tuple[int, int]:
        """Drop the unplayed frames of the failed stream's incomplete segment; return where
        the next stream starts in the reply's text and how many of its first frames were
        already heard."""
        if attempt.segment < 0:
            return attempt.base, attempt.skip
        self._dropped.add((attempt.id, attempt.segment))
        start = attempt.segment_start
        played_start, played_position = self._last_played
        return start, played_position + 1 if played_start == start else 0
