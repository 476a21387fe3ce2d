"""What of AEC3's output goes on to the VAD: whether the room echoes at all (`EchoPath`) and,
while AEC3 still learns the room, a guard against the echo it lets through
(`ConvergenceGuard`). Both work on 10 ms blocks at 16 kHz."""

from __future__ import annotations

import collections

import numpy as np
import numpy.typing as npt

from voicefleet.orchestrator.vad import VAD_RATE, energy, frame_energy_db

Pcm16 = npt.NDArray[np.int16]
BLOCK = VAD_RATE // 100  # AEC3 works on 10 ms blocks
_SILENT_DB = -70.0
_QUIET_POWER = (32768 * 10 ** (-50 / 20)) ** 2  # a microphone under -50 dBFS hears no echo
QUIET_DELAY = 30  # blocks: the longest echo delay the quiet check allows for (300 ms)


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
        self.lag_ms = 0  # where the last correlation peaked: the far end this much earlier
        self.echoes: bool | None = None  # None: not known yet
        self._searched = False  # the last correlation searched every lag
        self._since = 0  # blocks since the far end first played
        self._far_power = 0.0
        self._near_power = 0.0

    def add(self, far: Pcm16, near: Pcm16, playing: bool | None = None) -> None:
        """One 10 ms block of each (`playing`: whether `far` has sound, if the caller knows)."""
        self._far.append(far)
        self._near.append(near)
        if np.any(far) if playing is None else playing:
            self._active += 1
            self._seen += 1
        if self._seen and self.echoes is None:  # known either way: the check has nothing to do
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
        self.correlation, lag = _best_correlation(
            far[far.size - length - max_lag :], near[-length:]
        )
        self.lag_ms = lag * 1000 // VAD_RATE
        self._searched = max_lag == self.max_lag * BLOCK
        return self.correlation

    def _estimate(self) -> bool | None:
        self.correlate_now()
        if self.correlation >= self.min_correlation:
            return True
        if self.echoes is not None:
            return self.echoes
        heard_enough = self._seen >= self.max_lag + self.first_after
        return False if heard_enough and self._searched else None


def _best_correlation(
    far: npt.NDArray[np.float64], near: npt.NDArray[np.float64]
) -> tuple[float, int]:
    """The normalized correlation of `near` with `far` at the lag where it is highest, and that
    lag (samples by which the echo trails the far end); `far` holds the lags' worth of samples
    more than `near`, before it."""
    max_lag = far.size - near.size
    size = 1 << (far.size + near.size).bit_length()
    cross = np.fft.irfft(np.fft.rfft(far, size) * np.conj(np.fft.rfft(near, size)), size)
    # cross[j] = sum near[t] * far[t + j]: far `max_lag - j` samples earlier.
    offsets = cross[: max_lag + 1]
    energy = np.cumsum(np.concatenate([[0.0], far * far]))
    far_energy = energy[near.size : near.size + max_lag + 1] - energy[: max_lag + 1]
    near_energy = float(np.sum(near * near))
    if near_energy == 0:
        return 0.0, 0
    # A lag whose far end is (nearly) silent correlates with nothing: rounding noise over a
    # tiny energy would look like a perfect match.
    usable = far_energy > 0.05 * float(far_energy.max()) + 1e-3
    normalized = np.where(usable, offsets / np.sqrt(far_energy * near_energy + 1e-12), 0.0)
    best = int(np.argmax(normalized))
    return float(normalized[best]), max_lag - best


class DelayTracker:
    """Where the echo is now, relative to the far end as placed.

    The server places the reply on the microphone's timeline as the client should play it;
    a client whose playback runs dry for a moment plays the rest later than that (and a
    server that falls behind its own schedule places it later than the client plays it).
    AEC3 then loses the echo: it passes it nearly untouched for about a second while it finds
    the new delay (bench/echo.py: one 60 ms underrun made all 90 of its replies interrupt
    themselves). The tracker finds the jump in the raw microphone instead, which an echo
    dominates: every 10 ms, the last 150 ms of microphone correlated with the far end at
    every lag from 0 to 500 ms, both at 8 kHz (one FFT). Once a lag has held at `SETTLED` or
    more, a different lag that correlates at `MOVED` or more `CONFIRM` times in a row is a
    jump: `jump()` returns it once (16 kHz samples; positive: the echo now comes later), and
    the canceller shifts the far end by as much, so that AEC3 sees the delay it learnt.
    While a new lag awaits confirmation (`moving`), the canceller holds its output down.
    Window, confirmations and thresholds were chosen with bench/echo.py's underrun cases.
    """

    DECIMATE = 2  # 16 kHz -> 8 kHz
    WINDOW = 15  # blocks of microphone correlated (150 ms)
    EVERY = 1  # blocks between estimates
    CONFIRM = 3  # estimates in a row at the new lag
    SETTLED = 0.8
    MOVED = 0.6
    TOLERANCE = 16  # samples (1 ms) within which two lags are the same
    QUIET_AFTER = 50  # blocks after a jump before the next can be seen (the window refills)

    def __init__(self, max_lag_blocks: int = 50) -> None:
        step = BLOCK // self.DECIMATE
        self._far = np.zeros((self.WINDOW + max_lag_blocks) * step)
        self._near = np.zeros(self.WINDOW * step)
        self._count = 0
        self._quiet = 0
        self.lag: int | None = None  # the settled lag, 16 kHz samples
        self._candidate: int | None = None
        self._seen = 0  # estimates in a row at the candidate lag
        self._jump = 0
        self.jumps = 0

    def add(self, far: Pcm16, near: Pcm16) -> None:
        """One 10 ms block of each, as fed to the canceller."""
        _push(self._far, _decimate(far, self.DECIMATE))
        _push(self._near, _decimate(near, self.DECIMATE))
        self._count += 1
        if self._quiet:
            self._quiet -= 1
            return
        if self._count * BLOCK // self.DECIMATE < self._far.size or self._count % self.EVERY:
            return
        near_all, far_all = self._near, self._far
        if float(np.mean(near_all * near_all)) < _QUIET_POWER:
            return  # nothing but room noise: no echo to find
        # Most of the time the echo is where it was: one dot product says so, and the search
        # over every lag (~30 times the cost) is skipped.
        if (
            self.lag is not None
            and self._candidate is None
            and _correlation_at(far_all, near_all, self.lag // self.DECIMATE) >= self.MOVED
        ):
            return
        correlation, lag = _best_correlation(far_all, near_all)
        lag *= self.DECIMATE
        if self.lag is None or abs(lag - self.lag) <= self.TOLERANCE:
            if correlation >= self.SETTLED:
                self.lag = lag
            self._candidate = None
            return
        if correlation < self.MOVED:
            self._candidate = None
            return
        if self._candidate is None or abs(lag - self._candidate) > self.TOLERANCE:
            self._candidate, self._seen = lag, 1
            return
        self._seen += 1
        if self._seen < self.CONFIRM:
            return
        # The far end moves by the jump: the echo comes at the settled lag again.
        self._jump += lag - self.lag
        self.jumps += 1
        self._candidate = None
        self._quiet = self.QUIET_AFTER

    @property
    def moving(self) -> bool:
        """The echo seems to have moved, not confirmed yet: AEC3 is likely passing it."""
        return self._candidate is not None

    def jump(self) -> int:
        """The jump found since the last call (0: none)."""
        found, self._jump = self._jump, 0
        return found


def _correlation_at(far: npt.NDArray[np.float64], near: npt.NDArray[np.float64], lag: int) -> float:
    """The normalized correlation of `near` with `far` `lag` samples earlier (`far` ends where
    `near` does)."""
    end = far.size - lag
    if lag < 0 or end - near.size < 0:
        return 0.0
    shifted = far[end - near.size : end]
    energy = float(np.dot(shifted, shifted)) * float(np.dot(near, near))
    return float(np.dot(shifted, near)) / np.sqrt(energy) if energy > 0 else 0.0


def _push(history: npt.NDArray[np.float64], new: npt.NDArray[np.float64]) -> None:
    """Shift `history` left by `new`'s size and put `new` at its end."""
    history[: -new.size] = history[new.size :]
    history[-new.size :] = new


def _decimate(pcm: Pcm16, step: int) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = pcm.astype(np.float64).reshape(-1, step).mean(axis=1)
    return result


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
        """Still within the first `converge_s` of reply audio, or of a realignment."""
        return self.blocks < self.converge_blocks

    def rearm(self, blocks: int) -> None:
        """Work again for (at least) `blocks` of reply audio: AEC3 relearns after a jump."""
        self.blocks = min(self.blocks, max(0, self.converge_blocks - blocks))

    def block(self, far: Pcm16, near: Pcm16, cleaned: Pcm16) -> Pcm16:
        """One 10 ms block: the far end, the raw microphone, AEC3's output; what goes on."""
        self.path.add(far, near)
        if self.path.echoes is False:
            return near
        far_db = frame_energy_db(far)
        self._far_db.append(far_db)
        envelope = max(self._far_db)
        if not self.working or envelope <= _SILENT_DB:
            return cleaned
        if far_db > _SILENT_DB:
            self.blocks += 1
        if frame_energy_db(cleaned) >= envelope + self.margin_db:
            return cleaned
        self.attenuated += 1
        return attenuate(cleaned)


def attenuate(pcm: Pcm16) -> Pcm16:
    """30 dB quieter."""
    quieter: Pcm16 = (pcm.astype(np.int32) // 32).astype(np.int16)
    return quieter


def _power(pcm: Pcm16) -> float:
    return energy(pcm) / max(pcm.size, 1)
