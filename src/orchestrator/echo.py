"""Echo: the reply the client plays, cancelled out of its microphone before VAD and ASR.

A speakerphone's microphone hears the agent. The orchestrator knows exactly what it sent, so
that audio is the far end of an acoustic echo canceller (WebRTC's AEC3 through
`livekit.rtc.AudioProcessingModule`) and the microphone goes through it before the VAD.

Alignment. The canceller needs the far end fed no later than its echo reaches the microphone,
and not much earlier (AEC3's own delay estimator covers about 0-500 ms, measured with
bench/echo.py). `FarEnd` (far_end.py) places the reply on the microphone's timeline the way a client
plays it: a frame plays when it arrives or when the one before it ends, whichever is later;
pausing the client's playback holds what it had queued, cancelling drops it. Frames sent
ahead of real time (the pacing lead) therefore line up with when they are heard, not with when
they left; what remains (network, the client's output and input latency, the room) is left to
AEC3, shifted by `pipeline.echo.delay_ms` for clients known to be slower than that.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
from livekit import rtc
from pydantic import BaseModel, ConfigDict, Field

from voicefleet.audio.format import OUTPUT_SAMPLE_RATE
from voicefleet.audio.pcm import float_to_int16, s16le_to_float
from voicefleet.audio.resample import StreamResampler
from voicefleet.orchestrator.echo_guard import (
    BLOCK,
    ConvergenceGuard,
    DelayTracker,
    Pcm16,
    attenuate,
)
from voicefleet.orchestrator.far_end import FarEnd
from voicefleet.orchestrator.protocol import AudioCancel, AudioPause, AudioResume, ServerMessage
from voicefleet.orchestrator.vad import VAD_RATE, energy

if TYPE_CHECKING:
    from voicefleet.orchestrator.services import SessionSink

log = logging.getLogger(__name__)


class EchoConfig(BaseModel):
    """`pipeline.echo`: the server-side echo canceller."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: never cancel echo, whatever hello asks")
    noise_suppression: bool = Field(False, description="WebRTC noise suppression as well")
    high_pass_filter: bool = Field(True, description="remove DC and rumble below ~80 Hz")
    delay_ms: int = Field(
        0, ge=0, le=1000, description="extra far-end delay for clients slower than ~400 ms"
    )
    speaking_gate_scale: float = Field(
        1.4,
        ge=1.0,
        le=10.0,
        description="VAD gate (amplitude) while the agent speaks, with the canceller on",
    )
    max_far_end_s: float = Field(
        3.0, gt=0, le=30, description="far-end audio held ahead of the microphone, at most"
    )
    converge_s: float = Field(
        1.5,
        ge=0,
        le=60,
        description="seconds of reply audio during which the convergence guard works (0: off)",
    )
    guard_margin_db: float = Field(
        -6.0,
        ge=-30,
        le=30,
        description="while converging: speech must reach the reply's recent peak level + this",
    )
    track_delay: bool = Field(
        True, description="follow jumps in the echo's delay (a client's playback ran dry)"
    )


def cancels_echo(mode: str, transport: str, config: EchoConfig) -> bool:
    """Whether the server cancels echo for a session: `hello.echo_cancellation` decides,
    `auto` meaning yes on a WebSocket (a CLI, a phone gateway) and no on LiveKit (the browser's
    WebRTC stack cancels echo on the room's audio itself)."""
    if not config.enabled or mode in ("off", "client"):
        return False
    return mode == "on" or transport == "websocket"


class EchoCanceller:
    """One session's canceller: far-end frames in, the microphone (16 kHz) through AEC3."""

    def __init__(self, config: EchoConfig) -> None:
        self.config = config
        self.far_end = FarEnd(
            delay_samples=config.delay_ms * VAD_RATE // 1000,
            max_ahead=int(config.max_far_end_s * VAD_RATE),
        )
        self._resampler = StreamResampler(OUTPUT_SAMPLE_RATE, VAD_RATE)
        self._apm: rtc.AudioProcessingModule | None = None  # made with the first microphone audio
        self._pending = np.zeros(0, np.int16)
        self._position = 0  # microphone samples received (the timeline's clock)
        self.echo_in = _Energy()  # the microphone while the far end plays
        self.echo_out = _Energy()  # the same, after cancellation
        self.guard = ConvergenceGuard(config.converge_s, config.guard_margin_db)
        self.tracker = DelayTracker() if config.track_delay else None
        # The raw microphone, block for block with the output: in a room found not to echo,
        # the utterance is transcribed from it (AEC3 may have dulled its first syllables).
        self._raw: collections.deque[Pcm16] = collections.deque(maxlen=_RAW_BLOCKS)
        self._out_end = 0  # output samples so far
        self._last_far = -_TAIL - 1  # timeline position of the last far-end block playing
        self.failed = False  # AEC3 raised: the microphone goes on uncancelled

    def played(self, pcm48: bytes) -> None:
        """One reply frame (48 kHz s16le) left for the client."""
        if self._apm is None:
            return  # no microphone audio yet: nothing to cancel, nothing to keep
        converted = self._resampler.process(s16le_to_float(pcm48))
        self.far_end.play(float_to_int16(converted), self._position)

    def pause(self) -> None:
        """The client was told to pause playback."""
        self.far_end.pause(self._position)

    def resume(self) -> None:
        """The client was told to resume playback."""
        self.far_end.resume(self._position)

    def flush(self) -> None:
        """The client was told to drop what it had queued."""
        self.far_end.flush(self._position)

    def process(self, mic: Pcm16) -> Pcm16:
        """Microphone audio (16 kHz) in; the same audio less the echo out, in whole 10 ms
        blocks (up to 10 ms is held until the next call)."""
        apm = self._processor()
        start = self._position - self._pending.size
        self._position += mic.size
        data = np.concatenate([self._pending, mic.astype(np.int16, copy=False)])
        whole = data.size // BLOCK * BLOCK
        self._pending = data[whole:].copy()
        out = np.empty(whole, np.int16)
        for offset in range(0, whole, BLOCK):
            at = start + offset
            far = self.far_end.take(at, BLOCK)
            near = data[offset : offset + BLOCK]
            playing = bool(np.any(far))
            if playing:
                self._last_far = at
            if self.guard.path.echoes is False or at - self._last_far > _TAIL:
                # Nothing to cancel: a room without echo, or a second after the last reply
                # audio (its echo has died away). AEC3 is skipped (it costs ~0.2 ms a block)
                # and keeps what it learnt.
                self.guard.path.add(far, near, playing)
                cleaned = near
            else:
                cleaned = self.guard.block(far, near, self._cancel(apm, far, near))
                if self._follow(far, near):
                    cleaned = attenuate(cleaned)
            out[offset : offset + BLOCK] = cleaned
            self._raw.append(near.copy())
            if playing:
                self.echo_in.add(near)
                self.echo_out.add(cleaned)
        self._out_end += whole
        return out

    def _follow(self, far: Pcm16, near: Pcm16) -> bool:
        """In a room that echoes: a jump in the echo's delay shifts the far end to match.
        True while the echo seems to have moved (the block is held down)."""
        if self.tracker is None or self.guard.path.echoes is not True:
            return False
        self.tracker.add(far, near)
        jump = self.tracker.jump()
        if jump:
            self.far_end.shift(jump)
            self.guard.rearm(_REARM_BLOCKS)
            log.debug("echo delay jumped by %+d ms: far end shifted", jump * 1000 // VAD_RATE)
        return self.tracker.moving

    def _cancel(self, apm: rtc.AudioProcessingModule, far: Pcm16, near: Pcm16) -> Pcm16:
        if self.failed:
            return near
        try:
            return _run(apm, far, near)
        except RuntimeError as error:
            # The session goes on with its microphone as it is, never with a traceback.
            self.failed = True
            log.warning("echo canceller failed, off for this session: %s", error)
            return near

    @property
    def hears_no_echo(self) -> bool:
        """The room was found not to echo the reply (a headset, a file), or, not known yet,
        the microphone does not correlate with the far end now."""
        path = self.guard.path
        if path.echoes is None and path.seen:
            return path.correlate_now() < path.min_correlation
        return path.echoes is False

    def microphone(self, end: int, count: int) -> Pcm16 | None:
        """The raw microphone for output samples [end - count, end), if still kept."""
        kept = len(self._raw) * BLOCK
        first = self._out_end - kept
        if end > self._out_end or end - count < first or count <= 0:
            return None
        # Only the blocks that hold the span, not the whole history kept.
        blocks = -(-(self._out_end - (end - count)) // BLOCK)
        tail_start = self._out_end - blocks * BLOCK
        raw = np.concatenate(list(itertools.islice(self._raw, len(self._raw) - blocks, None)))
        return raw[end - count - tail_start : end - tail_start]

    def reduction_db(self) -> float | None:
        """How much quieter the microphone was after cancellation while the far end played."""
        if not self.echo_in.count:
            return None
        return self.echo_in.db() - self.echo_out.db()

    def summary(self) -> str:
        """One line for the session's log: what the canceller did."""
        path = self.guard.path
        heard = {True: "heard", False: "not heard", None: "unknown"}[path.echoes]
        jumps = self.tracker.jumps if self.tracker is not None else 0
        return (
            f"{self.reduction_db() or 0.0:.1f} dB quieter while replies played (echo {heard}, "
            f"correlation {path.correlation:.2f} at {path.lag_ms} ms, {self.guard.attenuated} "
            f"blocks held down while converging, {jumps} delay jumps followed)"
        )

    def _processor(self) -> rtc.AudioProcessingModule:
        if self._apm is None:
            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=True,
                noise_suppression=self.config.noise_suppression,
                high_pass_filter=self.config.high_pass_filter,
            )
        return self._apm


_REARM_BLOCKS = 50  # reply blocks the convergence guard works again after a delay jump
_TAIL = VAD_RATE  # samples after the last reply audio during which echo may still come
_RAW_BLOCKS = 31 * 100  # the longest utterance (vad.max_utterance_s) and its pre-roll


def _run(apm: rtc.AudioProcessingModule, far: Pcm16, near: Pcm16) -> Pcm16:
    apm.process_reverse_stream(rtc.AudioFrame(far.tobytes(), VAD_RATE, 1, BLOCK))
    apm.set_stream_delay_ms(0)  # AEC3 estimates the delay itself; required when AEC is on
    frame = rtc.AudioFrame(near.tobytes(), VAD_RATE, 1, BLOCK)
    apm.process_stream(frame)
    return np.frombuffer(frame.data, dtype=np.int16).copy()


class _Energy:
    """Running mean power of int16 audio."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, pcm: Pcm16) -> None:
        self.total += energy(pcm)
        self.count += pcm.size

    def db(self) -> float:
        return 10 * math.log10(self.total / max(self.count, 1) + 1e-12)


class EchoTap:
    """A session's sink that tells the canceller what the client plays: every frame sent,
    and every pause, resume and cancel of the client's playback."""

    def __init__(self, sink: SessionSink, canceller: EchoCanceller) -> None:
        self._sink = sink
        self._canceller = canceller

    async def send_event(self, message: ServerMessage) -> None:
        """Deliver a JSON event; playback control moves the far end with it."""
        if isinstance(message, AudioPause):
            self._canceller.pause()
        elif isinstance(message, AudioResume):
            self._canceller.resume()
        elif isinstance(message, AudioCancel):
            self._canceller.flush()
        await self._sink.send_event(message)

    async def send_audio(self, pcm: bytes) -> None:
        """Deliver one frame; it becomes far end as it leaves."""
        self._canceller.played(pcm)
        await self._sink.send_audio(pcm)

    async def close(self, reason: str) -> None:
        """End the transport's side of the session."""
        await self._sink.close(reason)
