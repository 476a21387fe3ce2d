"""The LiveKit bridge: a room's audio and data channel in and out of one TurnController.

The room is reached through `RoomBoundary`, a small interface over what a LiveKit room gives a
session: the participant's microphone frames, an audio output, the data channel, and the moment
the participant leaves. `RealRoom` (livekit.py) implements it over `livekit.rtc`; tests use a
fake. The bridge is the session's `SessionSink`, so the pipeline is the same as over WebSocket:

    microphone rtc.AudioFrame (any rate, channels, size) -> mono PCM16 at hello.sample_rate
        -> session.push_audio
    pipeline frame (1920 bytes, 48 kHz mono) -> rtc.AudioFrame of exactly 960 samples -> output
    events -> JSON (to_json) on the data channel, topic EVENTS_TOPIC; AudioCancel also clears
        the output's queue, so buffered speech stops at once
    JSON control on topic CONTROL_TOPIC (text, interrupt, bye) -> the session
    participant left -> session.close("participant_left")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol

import numpy as np
from livekit import rtc

from voicefleet.audio.format import FRAME_BYTES, FRAME_SAMPLES, OUTPUT_SAMPLE_RATE
from voicefleet.audio.pcm import float_to_s16le
from voicefleet.audio.resample import StreamResampler
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    ErrorEvent,
    Hello,
    ProtocolError,
    ServerMessage,
    client_message_from_json,
    dispatch_control,
    to_json,
)
from voicefleet.orchestrator.protocol_tools import ToolResponse

log = logging.getLogger(__name__)

EVENTS_TOPIC = "voicefleet.events"
CONTROL_TOPIC = "voicefleet.control"


class RoomBoundary(Protocol):
    """What the bridge needs from a room, for one remote participant."""

    def audio_frames(self) -> AsyncIterator[rtc.AudioFrame]:
        """The participant's microphone; ends when the track does."""
        ...

    def data_messages(self) -> AsyncIterator[bytes]:
        """Payloads the participant sent on CONTROL_TOPIC."""
        ...

    async def wait_participant_left(self) -> None:
        """Return once the participant has left (or the room is gone)."""

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue one frame on the published track (waits while the queue is full)."""

    def clear_output(self) -> None:
        """Drop what the published track has queued but not played."""

    async def send_data(self, payload: bytes, topic: str) -> None:
        """Send a reliable data message to the participant."""

    async def close(self, reason: str) -> None:
        """The session is over: stop publishing."""


class BridgedSession(Protocol):
    """The part of TurnController the bridge drives."""

    closed: asyncio.Event

    async def start(self) -> None:
        """Open the session."""

    async def push_audio(self, pcm: bytes) -> None:
        """Microphone audio, PCM16 mono at hello.sample_rate."""

    async def push_text(self, text: str, mode: str) -> None:
        """A typed turn."""

    async def interrupt(self) -> None:
        """Stop the agent's reply."""

    async def tool_response(self, response: ToolResponse) -> None:
        """A client's answer to a tool_request."""

    async def close(self, reason: str) -> None:
        """End the session."""


class MicrophoneConverter:
    """Any rtc.AudioFrame -> mono PCM16 at one rate, one stateful resampler per input rate."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: StreamResampler | None = None

    def convert(self, frame: rtc.AudioFrame) -> bytes:
        """Downmix and resample one frame; the resampler may hold a few ms back."""
        count = frame.samples_per_channel * frame.num_channels
        ints = np.frombuffer(frame.data, dtype=np.int16, count=count)
        mono = ints.reshape(-1, frame.num_channels).mean(axis=1) if frame.num_channels > 1 else ints
        if frame.sample_rate == self.rate:
            tail = self.flush()  # back at the session's rate after another one
            return tail + np.rint(mono).astype("<i2").tobytes()
        tail = b""
        if self._resampler is None or self._resampler.in_rate != frame.sample_rate:
            tail = self.flush()  # a rate change mid-stream: finish the old converter first
            self._resampler = StreamResampler(frame.sample_rate, self.rate)
        samples = (mono / 32768.0).astype(np.float32)
        return tail + float_to_s16le(self._resampler.process(samples))

    def flush(self) -> bytes:
        """End of the stream: what the resampler still holds."""
        resampler, self._resampler = self._resampler, None
        return b"" if resampler is None else float_to_s16le(resampler.flush())


def output_frame(pcm: bytes) -> rtc.AudioFrame:
    """One pipeline frame (1920 bytes) as a 960-sample 48 kHz mono rtc.AudioFrame."""
    if len(pcm) != FRAME_BYTES:
        raise ValueError(f"an output frame is {FRAME_BYTES} bytes, got {len(pcm)}")
    return rtc.AudioFrame(pcm, OUTPUT_SAMPLE_RATE, 1, FRAME_SAMPLES)


class LiveKitBridge:
    """Runs one TurnController over a room; it is the session's SessionSink."""

    def __init__(self, room: RoomBoundary, hello: Hello) -> None:
        self.room = room
        self.hello = hello
        self._microphone = MicrophoneConverter(hello.sample_rate)
        self._pending_output = b""
        self._closed = False

    # -- SessionSink ---------------------------------------------------------------------------

    async def send_event(self, message: ServerMessage) -> None:
        """JSON on the data channel; AudioCancel first clears the output queue."""
        if self._closed:
            return
        if isinstance(message, AudioCancel):
            self._pending_output = b""
            self.room.clear_output()
        await self.room.send_data(to_json(message).encode(), EVENTS_TOPIC)

    async def send_audio(self, pcm: bytes) -> None:
        """Whole 960-sample frames to the room's audio output."""
        if self._closed:
            return
        data = self._pending_output + pcm
        whole = len(data) // FRAME_BYTES * FRAME_BYTES
        self._pending_output = data[whole:]
        for start in range(0, whole, FRAME_BYTES):
            await self.room.capture_frame(output_frame(data[start : start + FRAME_BYTES]))

    async def close(self, reason: str) -> None:
        """The session ended: stop publishing (once)."""
        if self._closed:
            return
        self._closed = True
        await self.room.close(reason)

    # -- driving the session ---------------------------------------------------------------

    async def run(self, session: BridgedSession) -> None:
        """Start the session, feed it until it closes or the participant leaves, then close it."""
        await session.start()
        pumps = [
            asyncio.create_task(_logged(self._pump_audio(session), "microphone")),
            asyncio.create_task(_logged(self._pump_control(session), "data channel")),
        ]
        left = asyncio.create_task(self.room.wait_participant_left())
        closed = asyncio.create_task(session.closed.wait())
        reason = "bridge_stopped"
        try:
            done, _ = await asyncio.wait({left, closed}, return_when=asyncio.FIRST_COMPLETED)
            if left in done:
                reason = "participant_left"
        finally:
            for task in (*pumps, left, closed):
                task.cancel()
            for task in (*pumps, left, closed):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not session.closed.is_set():
                await session.close(reason)

    async def _pump_audio(self, session: BridgedSession) -> None:
        async for frame in self.room.audio_frames():
            await self._push(session, self._microphone.convert(frame))
        await self._push(session, self._microphone.flush())

    async def _push(self, session: BridgedSession, pcm: bytes) -> None:
        if pcm:
            try:
                await session.push_audio(pcm)
            except ProtocolError as error:
                await self.send_event(ErrorEvent(code=error.code, message=error.message))

    async def _pump_control(self, session: BridgedSession) -> None:
        async for payload in self.room.data_messages():
            try:
                message = client_message_from_json(payload.decode("utf-8", errors="replace"))
                await dispatch_control(session, message)
            except ProtocolError as error:
                await self.send_event(ErrorEvent(code=error.code, message=error.message))


async def _logged(pump: Coroutine[Any, Any, None], name: str) -> None:
    # A broken input stream must not end the session silently, nor take it down.
    try:
        await pump
    except Exception:
        log.exception("livekit bridge: the %s pump failed", name)
