"""One worker stream of a reply: the text it is fed, the frames it returns, whether it stalls."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from voicefleet.fleet.speech import SpeakerSettings, SpeechFrame, WorkerSession
from voicefleet.rpc.tts_client import Command

_ids = itertools.count(1)


class ReplyText(Protocol):
    """The reply's text as it arrives (ReplyStream)."""

    text: str
    input_ended: bool
    settings: SpeakerSettings

    async def text_changed(self) -> None:
        """Until more text arrives or the input ends."""


class Attempt:
    """One worker stream of the reply, fed the reply's text from `base` on."""

    def __init__(self, reply: ReplyText, worker: WorkerSession, base: int, skip: int) -> None:
        self.id = next(_ids)
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

    async def read(self, call: Any, deliver: Callable[[SpeechFrame], None]) -> None:
        """Frames of the call, with reply-wide spans, to `deliver` until the final one."""
        attempt = self
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
            deliver(
                SpeechFrame(
                    frame.pcm, frame.final, frame.segment_index, start, end, attempt.id, position
                )
            )
            if frame.final:
                attempt.final = True
                return

    def stalled(self, paused: bool, resumed_at: float) -> str | None:
        """Why the stream counts as dead, or None: only while audio is owed and not paused."""
        attempt, settings = self, self.reply.settings
        if paused or attempt.text_sent_at is None:
            return None
        now = time.monotonic()
        if attempt.last_frame_at is None:
            waited = now - max(attempt.text_sent_at, resumed_at)
            limit = settings.first_frame_timeout_s
            return f"no first frame for {waited:.1f} s" if waited > limit else None
        if not self.reply.input_ended:
            return None  # the worker may be waiting for the rest of a sentence
        waited = now - max(attempt.last_frame_at, resumed_at)
        limit = settings.stall_timeout_s
        return f"no frame for {waited:.1f} s while audio is owed" if waited > limit else None
