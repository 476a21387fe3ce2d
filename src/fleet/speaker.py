"""Speaking through the fleet: one `ReplyStream` owns each reply's worker stream.

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
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.faults import Fault, classify, describe
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.router import Router
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE, RESUME, STOP, Command, TTSClient

log = logging.getLogger(__name__)
_attempts = itertools.count(1)


class SpeechFailed(Exception):
    """The reply could not be spoken; `code` is the error code for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SpeakerSettings:
    """Deadlines and limits of the fleet client."""

    start_timeout_s: float = 3.0  # StartSession
    control_timeout_s: float = 1.0  # PAUSE / RESUME / STOP
    end_timeout_s: float = 2.0  # EndSession
    first_frame_timeout_s: float = 10.0  # text sent, no frame yet
    stall_timeout_s: float = 1.5  # audio owed (input ended), no frame for this long
    max_chunk_chars: int = 1000  # longest TextChunk sent (the worker's limit is larger)
    max_reply_chars: int = 20_000  # longer replies are cut here (reply_truncated)


@dataclass(frozen=True)
class SpeechFrame:
    """20 ms of reply audio and what it speaks: characters [start, end) of the reply's text."""

    pcm: bytes
    final: bool
    segment: int = 0
    start: int = 0
    end: int = 0
    attempt: int = 0
    position: int = 0  # frame index within its segment (across failovers)


@dataclass
class _Worker:
    name: str
    address: str
    client: TTSClient
    session: str


class _Attempt:
    """One worker stream of the reply, fed the reply's text from `base` on."""

    def __init__(self, reply: ReplyStream, worker: _Worker, base: int, skip: int) -> None:
        self.id = next(_attempts)
        self.reply = reply
        self.worker = worker
        self.base = base
        self.skip = skip  # frames of the first segment the person already heard
        self.in_segment = 0  # frames received of the current segment
        self.commanded: Command | None = None
        self.received = 0
        self.final = False
        self.segment = -1  # highest segment index received
        self.segment_start = base  # its first character in the reply's text
        self.text_sent_at: float | None = None
        self.last_frame_at: float | None = None

    async def chunks(self) -> AsyncIterator[str]:
        """The reply's text from `base`, in pieces the worker accepts, until the input ends."""
        reply, limit = self.reply, self.reply.settings.max_chunk_chars
        position = self.base
        while True:
            pending = reply.text[position:]
            if pending.strip():  # the worker rejects chunks of only whitespace
                piece = pending[:limit]
                position += len(piece)
                if self.text_sent_at is None:
                    self.text_sent_at = time.monotonic()
                yield piece
                continue
            if reply.input_ended:
                return
            await reply.text_changed()


class ReplyStream:
    """Speaks one reply's text through the fleet: the one owner of its worker stream."""

    def __init__(self, speaker: Speaker, texts: AsyncIterator[str]) -> None:
        self.speaker = speaker
        self.settings = speaker.settings
        self.text = ""
        self.input_ended = False
        self.truncated = False
        self.failovers = 0
        self.stalls = 0
        self.error: SpeechFailed | None = None
        self.played_end = 0  # the reply's text up to here was sent to the person
        self._last_played: tuple[int, int] = (-1, -1)  # (segment start, position)
        self.worker_name: str | None = None
        self.paused = False
        self.stopped = False
        self._frames: deque[SpeechFrame] = deque()
        self._dropped: set[tuple[int, int]] = set()
        self._done = False
        self._wake_frames = asyncio.Event()
        self._wake_text = asyncio.Event()
        self._current: _Attempt | None = None
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
        self.played_end = max(self.played_end, frame.end)
        self._last_played = (frame.start, frame.position)

    @property
    def heard(self) -> str:
        """The reply's text the person was sent, whole segments (a cut one counts whole)."""
        return self.text[: self.played_end].strip()

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
                    "session %s: %s to %s failed: %s",
                    self.speaker.session_id,
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
                except (NoWorkerAvailable, SpeechFailed) as error:
                    self.error = (
                        error
                        if isinstance(error, SpeechFailed)
                        else SpeechFailed("tts_failed", str(error))
                    )
                    return
                attempt = _Attempt(self, worker, base, skip)
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
                        self.speaker.failed(worker, describe(error), attempt.segment)
        finally:
            self._current = None
            self._finish()

    async def _speak(self, attempt: _Attempt) -> None:
        """One worker stream: returns at the final frame or STOP; raises on any failure."""
        worker = attempt.worker
        if self.paused:  # held across a failover: the new worker starts paused
            attempt.commanded = PAUSE
            async with asyncio.timeout(self.settings.control_timeout_s):
                await worker.client.control(worker.session, PAUSE)
        self._apply()  # a command that arrived while the stream opened
        call = worker.client.synthesize(worker.session, attempt.chunks())
        reader = asyncio.create_task(self._read(call, attempt))
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=0.1)
                if not reader.done() and (why := self._stalled(attempt)):
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

    async def _read(self, call: Any, attempt: _Attempt) -> None:
        async for frame in call:
            attempt.received += 1
            attempt.last_frame_at = time.monotonic()
            start, end = attempt.base + frame.text_start, attempt.base + frame.text_end
            if frame.segment_index > attempt.segment:
                attempt.segment, attempt.segment_start = frame.segment_index, start
                attempt.in_segment = 0
            position = attempt.in_segment
            attempt.in_segment += 1
            if frame.segment_index == 0 and position < attempt.skip and not frame.final:
                continue  # heard before the failover
            self._frames.append(
                SpeechFrame(
                    frame.pcm, frame.final, frame.segment_index, start, end, attempt.id, position
                )
            )
            self._wake_frames.set()
            if frame.final:
                attempt.final = True
                return

    def _stalled(self, attempt: _Attempt) -> str | None:
        """Why the stream counts as dead, or None: only while audio is owed and not paused."""
        if self.paused or attempt.text_sent_at is None:
            return None
        now = time.monotonic()
        if attempt.last_frame_at is None:
            waited = now - max(attempt.text_sent_at, self._resumed_at)
            limit = self.settings.first_frame_timeout_s
            return f"no first frame for {waited:.1f} s" if waited > limit else None
        if not self.input_ended:
            return None  # the worker may be waiting for the rest of a sentence
        waited = now - max(attempt.last_frame_at, self._resumed_at)
        limit = self.settings.stall_timeout_s
        return f"no frame for {waited:.1f} s while audio is owed" if waited > limit else None

    def _recover(self, attempt: _Attempt) -> tuple[int, int]:
        """Drop the unplayed frames of the failed stream's incomplete segment; return where
        the next stream starts in the reply's text and how many of its first frames were
        already heard."""
        if attempt.segment < 0:
            return attempt.base, attempt.skip
        self._dropped.add((attempt.id, attempt.segment))
        start = attempt.segment_start
        played_start, played_position = self._last_played
        return start, played_position + 1 if played_start == start else 0


class Speaker:
    """Speaks the replies of one session through the fleet: routing, worker sessions (one per
    worker, reused across replies) and ReplyStreams."""

    def __init__(
        self,
        router: Router,
        pool: WorkerPool,
        session_id: str,
        *,
        language: str = "",
        model: str = "",
        voice: str = "",
        settings: SpeakerSettings | None = None,
    ) -> None:
        self.router = router
        self.pool = pool
        self.session_id = session_id
        self.language = language
        self.model = model
        self.voice = voice
        self.settings = settings or SpeakerSettings()
        self._sessions: dict[str, str] = {}  # worker address -> worker session id
        self._background: set[asyncio.Task[Any]] = set()

    def stream(self, texts: AsyncIterator[str]) -> ReplyStream:
        """Start speaking a reply; its text arrives through `texts`."""
        return ReplyStream(self, texts)

    async def open(self, exclude: set[str]) -> _Worker:
        """A worker session on the best worker not excluded (opened if needed)."""
        last_error = "no candidate"
        for record in self.router.candidates(self.language, self.model, exclude):
            client = self.pool.client(record.address)
            session = self._sessions.get(record.address)
            if session is None:
                session = f"{self.session_id}.{secrets.token_hex(6)}"
                # Count the placement before awaiting, so concurrent sessions spread out.
                self.router.placed(record.name)
                try:
                    async with asyncio.timeout(self.settings.start_timeout_s):
                        await client.start_session(
                            session, self.model, voice=self.voice, language=self.language
                        )
                except Exception as error:
                    fault = classify(error)
                    last_error = f"{record.name}: {describe(error)}"
                    log.warning(
                        "session %s: StartSession failed on %s", self.session_id, last_error
                    )
                    if fault is Fault.REQUEST:
                        raise SpeechFailed("tts_rejected", last_error) from None
                    if fault is Fault.WORKER:
                        self.router.mark_failed(record.name)
                    exclude.add(record.name)
                    continue
                self._sessions[record.address] = session
            return _Worker(record.name, record.address, client, session)
        raise NoWorkerAvailable(f"no TTS worker could open a session ({last_error})")

    def failed(self, worker: _Worker, reason: str, segment: int) -> None:
        """A worker failed mid-reply: cool it down."""
        log.warning(
            "session %s: worker %s failed mid-reply (%s); re-routing from segment %d",
            self.session_id,
            worker.name,
            reason,
            max(segment, 0),
        )
        self.router.mark_failed(worker.name)

    def forget(self, worker: _Worker, *, end: bool) -> None:
        """Stop using a worker session; end it there in the background (bounded)."""
        if self._sessions.get(worker.address) == worker.session:
            del self._sessions[worker.address]
        if end:
            self._spawn(self._end(worker.client, worker.session))

    async def _end(self, client: TTSClient, session: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.settings.end_timeout_s):
                await client.end_session(session)

    def _spawn(self, step: Awaitable[None]) -> None:
        task = asyncio.ensure_future(step)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """End this session's worker sessions (each bounded by the EndSession deadline)."""
        sessions, self._sessions = self._sessions, {}
        ends = [self._end(self.pool.client(a), s) for a, s in sessions.items()]
        await asyncio.gather(*ends, *self._background, return_exceptions=True)
