"""Speaking a reply through the fleet, with failover.

Text deltas stream to the routed worker as they arrive; frames stream back. The speaker mirrors
the worker's segmentation (the same TextSegmenter over the same chunks gives the same segment
indexes), so when a worker dies mid-reply it knows which segment was playing: that segment and
everything after it are re-sent to the next worker, and the person hears the whole reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.router import Router
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE, RESUME, STOP, Command, TTSClient
from voicefleet.tts.segmenter import TextSegmenter

log = logging.getLogger(__name__)
_counter = itertools.count()


class SpeechFailed(Exception):
    """No worker could finish the reply; the message says why."""


@dataclass(frozen=True)
class SpeechFrame:
    """20 ms of reply audio."""

    pcm: bytes
    final: bool


class _TextLog:
    """The reply's text as it arrives, append-only: streams read it by position, so a stream
    that fails can never take text meant for the next one."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.ended = False
        self._changed = asyncio.Event()

    def add(self, text: str) -> None:
        self.items.append(text)
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def wait_beyond(self, position: int) -> None:
        while position >= len(self.items) and not self.ended:
            self._changed.clear()
            await self._changed.wait()


class _Attempt:
    """One worker stream of the reply: what it was handed, mirrored through the worker's
    segmentation (the same TextSegmenter over the same chunks gives the same indexes)."""

    def __init__(self, log: _TextLog, start: int, resend: str) -> None:
        self.log = log
        self.position = start
        self.resend = resend
        self.segmenter = TextSegmenter()
        self.segments: list[str] = []
        self.dead = False

    async def chunks(self) -> AsyncIterator[str]:
        """The request stream: the re-sent text, then the log from this attempt's start."""
        if self.resend:
            self._sent(self.resend + " ")
            yield self.resend + " "
        while True:
            await self.log.wait_beyond(self.position)
            if self.dead:
                return
            if self.position < len(self.log.items):
                text = self.log.items[self.position]
                self.position += 1
                self._sent(text)
                yield text
            elif self.log.ended:
                self.segments += [s.text for s in self.segmenter.flush()]
                return

    def _sent(self, text: str) -> None:
        self.segments += [s.text for s in self.segmenter.push(text)]

    def unspoken(self, from_segment: int) -> str:
        """Text handed to this stream from `from_segment` on (its segments and the remainder)."""
        self.dead = True
        parts = [*self.segments[from_segment:], self.segmenter.pending_text.strip()]
        return " ".join(parts).strip()


class ReplySpeaker:
    """Speaks replies for one orchestrator session; controls the worker currently speaking."""

    def __init__(
        self,
        router: Router,
        pool: WorkerPool,
        session_id: str,
        *,
        language: str = "",
        model: str = "",
        voice: str = "",
        first_frame_timeout_s: float = 10.0,
    ) -> None:
        self.router = router
        self.pool = pool
        self.session_id = session_id
        self.language = language
        self.model = model
        self.voice = voice
        self.first_frame_timeout_s = first_frame_timeout_s
        self.worker_name: str | None = None
        self.failovers = 0
        self._sessions: dict[str, str] = {}  # worker address -> worker session id
        self._current: tuple[TTSClient, str] | None = None

    async def _open(self, exclude: set[str]) -> tuple[TTSClient, str, str]:
        last_error = "no candidate"
        for worker in self.router.candidates(self.language, self.model, exclude):
            client = self.pool.client(worker.address)
            worker_session = self._sessions.get(worker.address)
            if worker_session is None:
                worker_session = f"{self.session_id}.{next(_counter)}"
                # Count the placement before awaiting, so concurrent sessions spread out.
                self.router.placed(worker.name)
                try:
                    await client.start_session(
                        worker_session, self.model, voice=self.voice, language=self.language
                    )
                except grpc.aio.AioRpcError as error:
                    last_error = f"{worker.name}: {error.code().name}: {error.details()}"
                    log.warning(
                        "session %s: StartSession failed on %s", self.session_id, last_error
                    )
                    self.router.mark_failed(worker.name)
                    exclude.add(worker.name)
                    continue
                self._sessions[worker.address] = worker_session
            return client, worker_session, worker.name
        raise NoWorkerAvailable(f"no TTS worker could open a session ({last_error})")

    async def speak(self, texts: AsyncIterator[str]) -> AsyncIterator[SpeechFrame]:
        """Stream the texts to the fleet; yield frames until the reply's final frame."""
        log_ = _TextLog()

        async def feed() -> None:
            try:
                async for text in texts:
                    if text:
                        log_.add(text)
            finally:
                # Whatever ends the text (even an error, reported by its owner) ends the input.
                log_.end()

        feeder = asyncio.create_task(feed())
        failed: set[str] = set()
        attempt = _Attempt(log_, 0, "")
        reopened = False
        try:
            while True:
                client, worker_session, name = await self._open(failed)
                self.worker_name = name
                self._current = (client, worker_session)
                highest = -1
                try:
                    stream = client.synthesize(worker_session, attempt.chunks())
                    async for frame in self._frames(stream):
                        highest = max(highest, frame.segment_index)
                        yield SpeechFrame(frame.pcm, frame.final)
                        if frame.final:
                            return
                    return  # ended without a final frame: STOP
                except (grpc.aio.AioRpcError, TimeoutError) as error:
                    reason = (
                        error.code().name if isinstance(error, grpc.aio.AioRpcError) else "timeout"
                    )
                    # The next attempt re-sends what this one was handed from the segment that
                    # was playing, then goes on reading the log where this one stopped.
                    attempt = _Attempt(log_, attempt.position, attempt.unspoken(max(highest, 0)))
                    self._sessions.pop(client.address, None)
                    if reason == "NOT_FOUND" and highest < 0 and not reopened:
                        # The worker ended our idle session (its reaper): open a new one there.
                        log.info("session %s: worker session gone on %s", self.session_id, name)
                        reopened = True
                        continue
                    log.warning(
                        "session %s: worker %s failed mid-reply (%s); re-routing from segment %d",
                        self.session_id,
                        name,
                        reason,
                        max(highest, 0),
                    )
                    self.router.mark_failed(name)
                    failed.add(name)
                    self.failovers += 1
        finally:
            self._current = None
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder

    async def _frames(
        self, stream: grpc.aio.StreamStreamCall[tts_pb2.TextChunk, tts_pb2.AudioFrame]
    ) -> AsyncIterator[tts_pb2.AudioFrame]:
        frames = aiter(stream)
        async with asyncio.timeout(self.first_frame_timeout_s):
            first = await anext(frames, None)
        if first is None:
            return
        yield first
        async for frame in frames:
            yield frame

    async def control(self, command: Command) -> bool:
        """PAUSE / RESUME / STOP the worker speaking now; False if none is or it failed."""
        current = self._current
        if current is None:
            return False
        client, worker_session = current
        try:
            await client.control(worker_session, command)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "session %s: control %s failed: %s", self.session_id, command, error.details()
            )
            return False
        return True

    async def pause(self) -> bool:
        """Hold the worker's frames."""
        return await self.control(PAUSE)

    async def resume(self) -> bool:
        """Release them."""
        return await self.control(RESUME)

    async def stop(self) -> bool:
        """Drop the rest of the reply."""
        return await self.control(STOP)

    async def close(self) -> None:
        """End this session's worker sessions."""
        for address, worker_session in self._sessions.items():
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.pool.client(address).end_session(worker_session)
        self._sessions.clear()
