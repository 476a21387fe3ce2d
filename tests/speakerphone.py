"""A speakerphone client: its microphone hears the reply it plays.

Frames from the server are played in real time (20 ms per 20 ms, once three have arrived,
and again so after the player runs dry), paused, resumed and dropped as `audio_pause` /
`audio_resume` / `audio_cancel` say, as a real client's player does. What it played comes
back into its microphone after `delay_ms` at `echo_db` relative to the reply's own level,
over faint room noise, mixed with whatever the person says (`say`). `simulate` does the same
offline, straight into an EchoCanceller. Used by the echo tests and bench/echo.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np
import soxr

from voicefleet.audio.format import FRAME_BYTES
from voicefleet.audio.resample import StreamResampler
from voicefleet.client.session import ClientSession
from voicefleet.orchestrator.echo import EchoCanceller, EchoConfig
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioResume,
    Hello,
    ServerMessage,
)

RATE = 16_000
CHUNK = RATE // 50  # 20 ms
PREBUFFER = 3  # frames a player holds before it starts (again), as real players do


class Speakerphone:
    """One session whose microphone is the room: the person plus the echo of the reply."""

    def __init__(
        self,
        url: str,
        *,
        echo_db: float,
        delay_ms: int,
        noise_dbfs: float = -60.0,
        seed: int = 0,
        **hello: Any,
    ) -> None:
        self.events: list[tuple[float, ServerMessage]] = []
        self.session = ClientSession(url, Hello(sample_rate=RATE, **hello), on_event=self._on_event)
        self.gain = 10 ** (echo_db / 20)
        self.delay = delay_ms * RATE // 1000
        self.noise_rms = 32768 * 10 ** (noise_dbfs / 20)
        self._rng = np.random.default_rng(seed)
        self._queue: list[bytes] = []  # frames received, not yet played
        self._seen = 0
        self._paused = False
        self._played: list[np.ndarray] = []  # 16 kHz, one 20 ms chunk per microphone chunk
        self._resampler = StreamResampler(48_000, RATE)
        self._out = np.zeros(0, np.float32)  # converted playback not yet played
        self._voice: list[np.ndarray] = []
        self._task: asyncio.Task[None] | None = None
        self.frames_played = 0
        self.underruns = 0  # times the player ran dry with a reply still arriving
        self._buffering = True  # (re)starting: waiting for PREBUFFER frames
        self.voice_started_at: float | None = None  # time.monotonic() of the first voice chunk

    async def open(self) -> None:
        """Connect (hello / ready) and start the microphone."""
        await self.session.open()
        self._task = asyncio.create_task(self._run())

    def say(self, clip: np.ndarray) -> None:
        """The person speaks `clip` (16 kHz int16) from the next chunk on."""
        self._voice.append(clip.astype(np.int16))

    async def close(self) -> None:
        """Stop the microphone and hang up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.session.close()

    def of_type(self, kind: type[ServerMessage]) -> list[tuple[float, ServerMessage]]:
        """(arrival time, message) of every event of one type, in order."""
        return [(at, m) for at, m in self.events if isinstance(m, kind)]

    def _on_event(self, message: ServerMessage) -> None:
        self.events.append((time.monotonic(), message))
        if isinstance(message, AudioPause):
            self._paused = True
        elif isinstance(message, AudioResume):
            self._paused = False
        elif isinstance(message, AudioCancel):
            self._take_new_frames()
            self._queue.clear()
            self._out = np.zeros(0, np.float32)
            self._paused = False
            self._buffering = True

    def _ended(self) -> bool:
        return any(isinstance(m, AudioEnd | AudioCancel) for _, m in self.events)

    def _take_new_frames(self) -> None:
        frames = self.session.result.frames
        self._queue.extend(frames[self._seen :])
        self._seen = len(frames)

    def _play_chunk(self) -> np.ndarray:
        self._take_new_frames()
        if self._buffering and (len(self._queue) >= PREBUFFER or self._ended()):
            self._buffering = False
        if not self._paused and self._queue and not self._buffering:
            frame = self._queue.pop(0)
            assert len(frame) == FRAME_BYTES
            self.frames_played += 1
            samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
            # The converter returns a little more or less than 320 samples a call: a FIFO keeps
            # the played signal continuous.
            self._out = np.concatenate([self._out, self._resampler.process(samples)])
        elif self._out.size < CHUNK:
            if self.frames_played and not self._paused and not self._ended():
                if not self._buffering:
                    self.underruns += 1
                self._buffering = True
            return np.zeros(CHUNK, np.int16)  # nothing playing (its last samples wait)
        piece, self._out = self._out[:CHUNK], self._out[CHUNK:]
        piece = np.concatenate([piece, np.zeros(CHUNK - piece.size, np.float32)])
        return np.clip(np.rint(piece * 32768), -32768, 32767).astype(np.int16)

    def _echo(self) -> np.ndarray:
        history = np.concatenate(self._played[-(self.delay // CHUNK + 2) :])
        end = history.size - self.delay
        piece = history[max(0, end - CHUNK) : max(0, end)]
        return np.concatenate([np.zeros(CHUNK - piece.size, np.int16), piece])

    def _voice_chunk(self) -> np.ndarray:
        if not self._voice:
            return np.zeros(CHUNK, np.int16)
        if self.voice_started_at is None:
            self.voice_started_at = time.monotonic()
        clip = self._voice[0]
        piece, rest = clip[:CHUNK], clip[CHUNK:]
        if rest.size:
            self._voice[0] = rest
        else:
            self._voice.pop(0)
        return np.concatenate([piece, np.zeros(CHUNK - piece.size, np.int16)])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while not self.session.finished:
            self._played.append(self._play_chunk())
            del self._played[: -(self.delay // CHUNK + 2)]
            mic = self._voice_chunk().astype(np.float64) + self._echo() * self.gain
            mic += self._rng.normal(0.0, self.noise_rms, CHUNK)
            pcm = np.clip(np.rint(mic), -32768, 32767).astype(np.int16)
            sent += CHUNK
            # Behind schedule (a loaded machine), still let frames that arrived meanwhile in.
            await asyncio.sleep(max(0.0, start + sent / RATE - loop.time()))
            await self.session.send_audio(pcm.tobytes())


def simulate(
    reply16: np.ndarray,
    delay_ms: int,
    gain_db: float,
    near: np.ndarray | None = None,
    near_at_s: float = 2.0,
    config: EchoConfig | None = None,
    underruns: tuple[tuple[float, int], ...] = (),
) -> tuple[np.ndarray, np.ndarray, EchoCanceller]:
    """The same without a network or a clock, for unit tests and bench/echo.py: the reply
    (16 kHz) leaves as 48 kHz frames 120 ms ahead of playback, as the orchestrator sends it;
    the microphone is its echo `delay_ms` later at `gain_db`, room noise (about -64 dBFS) and
    the person's `near` speech from `near_at_s`. `underruns`: (second of the reply, ms) where
    the client's playback ran dry and went silent for that long, unknown to the server (its
    echo comes that much later from there on). Returns (microphone, canceller output,
    canceller)."""
    reply48 = soxr.resample(reply16.astype(np.float32), RATE, 48_000).astype(np.int16)
    reply48 = np.concatenate([reply48, np.zeros(-reply48.size % 960, np.int16)])
    played = reply16
    for at_s, gap_ms in sorted(underruns, reverse=True):
        cut = int(at_s * RATE)
        played = np.concatenate([played[:cut], np.zeros(gap_ms * RATE // 1000), played[cut:]])
    total = played.size + RATE
    delay = delay_ms * RATE // 1000
    mic = np.random.default_rng(1).normal(0, 20, total)  # room noise, about -64 dBFS
    mic[delay : delay + played.size] += played[: total - delay] * 10 ** (gain_db / 20)
    if near is not None:
        start = int(near_at_s * RATE)
        mic[start : start + near.size] += near[: total - start]
    mic16 = np.clip(mic, -32768, 32767).astype(np.int16)
    canceller = EchoCanceller(config or EchoConfig())
    out = []
    frames_sent = 0
    for at in range(0, total, 320):  # 20 ms of microphone at a time
        # Frames leave up to 120 ms ahead of the client's playback.
        while frames_sent * 960 < reply48.size and frames_sent * 320 <= at + 6 * 320:
            canceller.played(reply48[frames_sent * 960 : (frames_sent + 1) * 960].tobytes())
            frames_sent += 1
        out.append(canceller.process(mic16[at : at + 320]))
    return mic16, np.concatenate(out), canceller
