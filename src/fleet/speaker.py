"""Speaking a session's replies through the fleet: routing, one worker session per worker
(reused across replies, ended in the background when a worker is dropped), and a
`ReplyStream` per reply (reply_stream.py) that owns its worker stream."""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.faults import Fault, classify, describe
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.reply_stream import ReplyStream
from voicefleet.fleet.router import Router
from voicefleet.fleet.speech import (
    SpeakerSettings,
    SpeechFailed,
    SpeechFrame,
    WorkerSession,
)
from voicefleet.rpc.tts_client import TTSClient

__all__ = ["ReplyStream", "Speaker", "SpeakerSettings", "SpeechFailed", "SpeechFrame"]
log = logging.getLogger(__name__)
_END_RETRIES_S = (0.0, 2.0, 4.0, 8.0, 16.0)


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
        options: Mapping[str, str] | None = None,
        paced: bool = True,
        settings: SpeakerSettings | None = None,
    ) -> None:
        self.router = router
        self.pool = pool
        self.session_id = session_id
        self.language = language
        self.model = model
        self.voice = voice
        self.options = dict(options or {})  # adapter options of every worker session
        # Paced: frames come at most the worker's lead ahead of real time (for playback);
        # unpaced: as fast as they are made (for files and buffering clients).
        self.paced = paced
        self.settings = settings or SpeakerSettings()
        self._sessions: dict[str, str] = {}  # worker address -> worker session id
        # Worker sessions opened on a worker with the model resident, or loading it: counted
        # and taken (take_placements) by whoever exports metrics.
        self.placements: collections.Counter[str] = collections.Counter()
        self._background: set[asyncio.Task[Any]] = set()

    def stream(self, texts: AsyncIterator[str], label: str = "") -> ReplyStream:
        """Start speaking a reply; its text arrives through `texts`; `label` (e.g. "turn 3")
        names it in log lines."""
        return ReplyStream(self, texts, label)

    async def open(self, exclude: set[str]) -> WorkerSession:
        """A worker session on the best worker not excluded (opened if needed)."""
        last_error = "no candidate"
        for record in self.router.candidates(self.language, self.model, exclude, self.voice):
            client = self.pool.client(record.address)
            session = self._sessions.get(record.address)
            if session is None:
                session = f"{self.session_id}.{secrets.token_hex(6)}"
                # Count the placement before awaiting, so concurrent sessions spread out.
                self.router.placed(record.name)
                try:
                    async with asyncio.timeout(self.settings.start_timeout_s):
                        await client.start_session(
                            session,
                            Router.model_for(record, self.model, self.voice),
                            voice=self.voice,
                            language=self.language,
                            options=self.options,
                            unpaced=not self.paced,
                        )
                except asyncio.CancelledError:
                    # The worker may have opened it all the same (a reply cancelled by a
                    # hang-up mid-call): end it there, or it holds a slot until its reaper.
                    self._spawn(self._end_eventually(client, session))
                    raise
                except Exception as error:
                    if isinstance(error, TimeoutError):  # the same: it may be open there
                        self._spawn(self._end_eventually(client, session))
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
                model = Router.model_for(record, self.model, self.voice)
                state = "resident" if model in record.resident_models else "loaded on demand"
                self.placements[state.replace(" ", "_")] += 1
                log.info(
                    "session %s: on %s, model %s (%s)%s",
                    self.session_id,
                    record.name,
                    model,
                    state,
                    f", voice {self.voice}" if self.voice else "",
                )
            return WorkerSession(record.name, record.address, client, session)
        raise NoWorkerAvailable(f"no TTS worker could open a session ({last_error})")

    def failed(self, worker: WorkerSession) -> None:
        """A worker failed mid-reply: cool it down."""
        self.router.mark_failed(worker.name)

    def observed(self, worker: WorkerSession, first_audio_ms: float) -> None:
        """Tell the router how fast this worker answered (network included)."""
        self.router.observe(worker.name, first_audio_ms)

    def forget(self, worker: WorkerSession, *, end: bool) -> None:
        """Stop using a worker session; end it there in the background (bounded)."""
        if self._sessions.get(worker.address) == worker.session:
            del self._sessions[worker.address]
        if end:
            self._spawn(self._end_eventually(worker.client, worker.session))

    async def _end(self, client: TTSClient, session: str) -> bool:
        """EndSession once; True when the worker no longer holds the session."""
        try:
            async with asyncio.timeout(self.settings.end_timeout_s):
                await client.end_session(session)
        except Exception as error:
            return classify(error, session_known=True) is Fault.SESSION_GONE
        return True

    async def _end_eventually(self, client: TTSClient, session: str) -> None:
        """A worker that failed may be back later (a stall, a partition): keep trying for a
        while, so its slot and model reference do not wait for its idle reaper."""
        for delay in _END_RETRIES_S:
            await asyncio.sleep(delay)
            if await self._end(client, session):
                return

    def _spawn(self, step: Awaitable[None]) -> None:
        task = asyncio.ensure_future(step)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """End this session's worker sessions (each bounded by the EndSession deadline)."""
        sessions, self._sessions = self._sessions, {}
        ends = [self._end(self.pool.client(a), s) for a, s in sessions.items()]
        await asyncio.gather(*ends, *self._background, return_exceptions=True)
