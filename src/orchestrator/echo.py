"""Echo: the reply the client plays, cancelled out of its microphone before VAD and ASR.

A speakerphone's microphone hears the agent. The orchestrator knows exactly what it sent, so
that audio is the far end of an acoustic echo canceller (WebRTC's AEC3 through
`livekit.rtc.AudioProcessingModule`) and the microphone goes through it before the VAD.

Alignment. The canceller needs the far end fed no later than its echo reaches the microphone,
and not much earlier (AEC3's own delay estimator covers about 0-500 ms, measured with
bench/echo.py). `FarEnd` places the reply on the microphone's timeline the way a client
plays it: a frame plays when it arrives or when the one before it ends, whichever is later;
pausing the client's playback holds what it had queued, cancelling drops it. Frames sent
ahead of real time (the pacing lead) therefore line up with when they are heard, not with when
they left; what remains (network, the client's output and input latency, the room) is left to
AEC3, shifted by `pipeline.echo.delay_ms` for clients known to be slower than that.
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from livekit import rtc
from pydantic import BaseModel, ConfigDict, Field

from voicefleet.audio.format import OUTPUT_SAMPLE_RATE
from voicefleet.audio.resample import StreamResampler
from voicefleet.orchestrator.protocol import AudioCancel, AudioPause, AudioResume, ServerMessage
from voicefleet.orchestrator.vad import VAD_RATE

if TYPE_CHECKING:
    from voicefleet.orchestrator.services import SessionSink

Pcm16 = npt.NDArray[np.int16]
BLOCK = VAD_RATE // 100  # AEC3 works on 10 ms blocks


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


def cancels_echo(mode: str, transport: str, config: EchoConfig) -> bool:
    """Whether the server cancels echo for a session: `hello.echo_cancellation` decides,
    `auto` meaning yes on a WebSocket (a CLI, a phone gateway) and no on LiveKit (the browser's
    WebRTC stack cancels echo on the room's audio itself)."""
    if not config.enabled or mode in ("off", "client"):
        return False
    return mode == "on" or transport == "websocket"


class FarEnd:
    """The reply as the client plays it, on the microphone's timeline (16 kHz samples)."""

    def __init__(self, delay_samples: int = 0, max_ahead: int = 3 * VAD_RATE) -> None:
        self.delay = delay_samples
        self.max_ahead = max_ahead
        self._start = 0  # timeline position of _samples[0]
        self._samples: collections.deque[Pcm16] = collections.deque()
        self._size = 0
        self._held: list[Pcm16] = []  # queued at the client while its playback is paused
        self.paused = False
        self.dropped = 0  # samples refused by the max_ahead bound

    @property
    def tail(self) -> int:
        """Timeline position where the queued far end ends."""
        return self._start + self._size

    def play(self, pcm: Pcm16, at: int) -> None:
        """`pcm` reached the client when the microphone was at `at`."""
        if not pcm.size:
            return
        if self.paused:
            self._held.append(pcm)
            return
        begin = max(at + self.delay, self.tail)
        if begin + pcm.size - at > self.max_ahead:
            self.dropped += pcm.size  # a client that sends no microphone audio
            return
        if begin > self.tail:
            self._append(np.zeros(begin - self.tail, np.int16))
        self._append(pcm)

    def pause(self, at: int) -> None:
        """The client stopped playing at `at`: what it had not played waits for resume."""
        if self.paused:
            return
        self.paused = True
        self._held = [self._cut(at + self.delay)]

    def resume(self, at: int) -> None:
        """Playback goes on from where it paused."""
        if not self.paused:
            return
        self.paused = False
        held, self._held = self._held, []
        for pcm in held:
            self.play(pcm, at)

    def flush(self, at: int) -> None:
        """The client dropped its queue (audio_cancel)."""
        self.paused = False
        self._held = []
        self._cut(at + self.delay)

    def take(self, at: int, count: int) -> Pcm16:
        """The far end for timeline positions [at, at + count) (silence where nothing plays);
        everything before `at + count` is forgotten."""
        out = np.zeros(count, np.int16)
        end = at + count
        while self._samples and self._start < end:
            head = self._samples[0]
            lo, hi = max(at, self._start), min(end, self._start + head.size)
            if hi > lo:
                out[lo - at : hi - at] = head[lo - self._start : hi - self._start]
            if self._start + head.size <= end:
                self._samples.popleft()
                self._size -= head.size
                self._start += head.size
            else:
                keep = end - self._start
                self._samples[0] = head[keep:]
                self._size -= keep
                self._start = end
        if not self._samples:
            self._start = max(self._start, end)
        return out

    def _append(self, pcm: Pcm16) -> None:
        if not self._samples:
            self._start = self.tail
        self._samples.append(pcm)
        self._size += pcm.size

    def _cut(self, at: int) -> Pcm16:
        """Remove and return what is queued from `at` on."""
        if at >= self.tail:
            return np.zeros(0, np.int16)
        queued = np.concatenate(list(self._samples)) if self._samples else np.zeros(0, np.int16)
        keep = max(0, at - self._start)
        self._samples = collections.deque([queued[:keep]] if keep else [])
        self._size = keep
        return queued[keep:]


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
        # The raw microphone, block for block with the output: in a room found not to echo,
        # the utterance is transcribed from it (AEC3 may have dulled its first syllables).
        self._raw: collections.deque[Pcm16] = collections.deque(maxlen=_RAW_BLOCKS)
        self._out_end = 0  # output samples so far
        self._last_far = -_TAIL - 1  # timeline position of the last far-end block playing

    @property
    def position(self) -> int:
        """Microphone samples received so far."""
        return self._position

    def played(self, pcm48: bytes) -> None:
        """One reply frame (48 kHz s16le) left for the client."""
        if self._apm is None:
            return  # no microphone audio yet: nothing to cancel, nothing to keep
        samples = np.frombuffer(pcm48, dtype="<i2").astype(np.float32) / 32768.0
        converted = self._resampler.process(samples)
        pcm = np.clip(np.rint(converted * 32768.0), -32768, 32767).astype(np.int16)
        self.far_end.play(pcm, self._position)

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
                self.guard.path.add(far, near)
                cleaned = near
            else:
                cleaned = self.guard.block(far, near, _run(apm, far, near))
            out[offset : offset + BLOCK] = cleaned
            self._raw.append(near.copy())
            if playing:
                self.echo_in.add(near)
                self.echo_out.add(cleaned)
        self._out_end += whole
        return out

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
        raw = np.concatenate(list(self._raw))
        return raw[end - count - first : end - first]

    def reduction_db(self) -> float | None:
        """How much quieter the microphone was after cancellation while the far end played."""
        if not self.echo_in.count:
            return None
        return self.echo_in.db() - self.echo_out.db()

    def _processor(self) -> rtc.AudioProcessingModule:
        if self._apm is None:
            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=True,
                noise_suppression=self.config.noise_suppression,
                high_pass_filter=self.config.high_pass_filter,
            )
        return self._apm


class EchoPath:
    """Does the microphone hear the far end?

    Every 250 ms of reply audio, over the last 1.5 s: the microphone's waveform correlated
    with the far end's at every lag from 0 to 500 ms (one FFT). An echo correlates at its
    delay (measured on Piper and espeak-ng speech: 1.0 alone, 0.6-0.9 under a person as loud
    as the echo, 0.16-0.5 under one 12 dB louder); independent speech much less (0.06-0.2,
    the highest in the first, shortest windows). At `min_correlation` or more the room
    echoes, and it is then taken to echo for the rest of the session (a person talking over
    the reply lowers the correlation; the room did not change). It does not echo when the
    microphone stayed 30 dB under the reply from 300 ms after it began (checked every block,
    so a quiet headset is known 400 ms into the first reply), or when no lag correlated after
    the reply played longer than the longest delay searched. An echo found later still
    counts: a false "no echo" (a delay over 300 ms) lasts until the next estimate.
    """

    def __init__(self, window_blocks: int = 150, max_lag_blocks: int = 50) -> None:
        self.window = window_blocks
        self.max_lag = max_lag_blocks
        self.first_after = 30  # blocks of reply audio before the first estimate
        self.every = 25
        self.min_correlation = 0.3
        size = window_blocks + max_lag_blocks
        self._far: collections.deque[Pcm16] = collections.deque(maxlen=size)
        self._near: collections.deque[Pcm16] = collections.deque(maxlen=size)
        self._active = 0  # blocks with the far end playing since the last estimate
        self._seen = 0  # blocks with the far end playing, in all
        self.correlation = 0.0
        self.echoes: bool | None = None  # None: not known yet
        self._searched = False  # the last correlation searched every lag
        self._since = 0  # blocks since the far end first played
        self._far_power = 0.0
        self._near_power = 0.0

    def add(self, far: Pcm16, near: Pcm16) -> None:
        """One 10 ms block of each."""
        self._far.append(far)
        self._near.append(near)
        if np.any(far):
            self._active += 1
            self._seen += 1
        if self._seen:
            self._quiet_check(far, near)
        # Once found, an echo stays found: no more estimates. "No echo" is checked again
        # every 2 s of reply audio (a headset taken off).
        every = self.every if self.echoes is None else 200
        if self.echoes is not True and self._seen >= self.first_after and self._active >= every:
            self._active = 0
            self.echoes = self._estimate()

    def _quiet_check(self, far: Pcm16, near: Pcm16) -> None:
        """Since the reply began: the far end's power, and the microphone's from QUIET_DELAY
        on (an echo arrives by then); a microphone 30 dB under the reply hears no echo."""
        self._since += 1
        self._far_power += _power(far)
        if self._since > QUIET_DELAY:
            self._near_power += _power(near)
        heard = self._since - QUIET_DELAY
        if self.echoes is None and heard >= 10:
            quiet = self._near_power / heard < 1e-3 * self._far_power / self._since
            if quiet:
                self.echoes = False

    @property
    def seen(self) -> int:
        """Blocks with the far end playing, so far."""
        return self._seen

    def correlate_now(self) -> float:
        """The best correlation over the history kept (see the class docstring)."""
        far = np.concatenate(self._far).astype(np.float64)
        near = np.concatenate(self._near).astype(np.float64)
        # Early on (a short history) the lags searched are fewer, never the window shorter
        # than them.
        max_lag = min(self.max_lag * BLOCK, near.size // 2)
        length = min(self.window * BLOCK, near.size - max_lag)
        self.correlation = _best_correlation(far[far.size - length - max_lag :], near[-length:])
        self._searched = max_lag == self.max_lag * BLOCK
        return self.correlation

    def _estimate(self) -> bool | None:
        self.correlate_now()
        if self.correlation >= self.min_correlation or self.echoes is not None:
            return self.correlation >= self.min_correlation or self.echoes
        heard_enough = self._seen >= self.max_lag + self.first_after
        return False if heard_enough and self._searched else None


def _best_correlation(far: npt.NDArray[np.float64], near: npt.NDArray[np.float64]) -> float:
    """The normalized correlation of `near` with `far` at the lag where it is highest; `far`
    holds the lags' worth of samples more than `near`, before it."""
    max_lag = far.size - near.size
    size = 1 << (far.size + near.size).bit_length()
    cross = np.fft.irfft(np.fft.rfft(far, size) * np.conj(np.fft.rfft(near, size)), size)
    # cross[j] = sum near[t] * far[t + j]: far `max_lag - j` samples earlier.
    offsets = cross[: max_lag + 1]
    energy = np.cumsum(np.concatenate([[0.0], far * far]))
    far_energy = energy[near.size : near.size + max_lag + 1] - energy[: max_lag + 1]
    near_energy = float(np.sum(near * near))
    if near_energy == 0:
        return 0.0
    # A lag whose far end is (nearly) silent correlates with nothing: rounding noise over a
    # tiny energy would look like a perfect match.
    usable = far_energy > 0.05 * float(far_energy.max()) + 1e-3
    normalized = np.where(usable, offsets / np.sqrt(far_energy * near_energy + 1e-12), 0.0)
    return float(normalized.max())


class ConvergenceGuard:
    """What goes on to the VAD, per 10 ms block.

    AEC3 learns the room from the reply itself: for its first second or so it can pass the
    echo almost untouched (measured: up to the far end's own level at a 0 dB echo), enough for
    the agent to barge in on itself; and while it learns it also swallows the onset of a voice
    in a room with no echo at all. So `EchoPath` first finds out whether the room echoes:
    - no echo heard (a headset, a WAV file): the microphone goes on as it is;
    - echo, or not known yet: AEC3's output, and until `converge_s` of reply audio has been
      cancelled a block counts as the person only when it reaches the far end's peak level
      over the last 500 ms (what a 0 dB echo would bring back at most) + `margin_db` (-6 dB:
      on 90 synthetic speakerphone replies bench/echo.py counts 2 self-interruptions at -6,
      1 at +3, 21 with no guard); a quieter block is attenuated by 30 dB. The price: while
      the guard works, talking over the agent needs a voice nearly as loud as the reply.
    """

    def __init__(self, converge_s: float, margin_db: float) -> None:
        self.converge_blocks = round(converge_s * 100)
        self.margin_db = margin_db
        self.blocks = 0  # blocks with the far end playing, in a room that echoes
        self.attenuated = 0
        self.path = EchoPath()
        self._far_db: collections.deque[float] = collections.deque(maxlen=50)

    @property
    def working(self) -> bool:
        """Still within the first `converge_s` of reply audio."""
        return self.blocks < self.converge_blocks

    def block(self, far: Pcm16, near: Pcm16, cleaned: Pcm16) -> Pcm16:
        """One 10 ms block: the far end, the raw microphone, AEC3's output; what goes on."""
        self.path.add(far, near)
        if self.path.echoes is False:
            return near
        far_db = _block_db(far)
        self._far_db.append(far_db)
        envelope = max(self._far_db)
        if not self.working or envelope <= _SILENT_DB:
            return cleaned
        if far_db > _SILENT_DB:
            self.blocks += 1
        if _block_db(cleaned) >= envelope + self.margin_db:
            return cleaned
        self.attenuated += 1
        quieter: Pcm16 = (cleaned.astype(np.int32) // 32).astype(np.int16)
        return quieter


_SILENT_DB = -70.0
_TAIL = VAD_RATE  # samples after the last reply audio during which echo may still come
_RAW_BLOCKS = 31 * 100  # the longest utterance (vad.max_utterance_s) and its pre-roll
QUIET_DELAY = 30  # blocks: the longest echo delay the quiet check allows for (300 ms)


def _power(pcm: Pcm16) -> float:
    samples = pcm.astype(np.float64) / 32768.0
    return float(np.mean(samples * samples))


def _block_db(pcm: Pcm16) -> float:
    samples = pcm.astype(np.float64) / 32768.0
    return 10 * math.log10(float(np.mean(samples * samples)) + 1e-12)


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
        samples = pcm.astype(np.float64) / 32768.0
        self.total += float(np.sum(samples * samples))
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
