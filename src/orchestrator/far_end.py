"""The far end: the reply as the client plays it, on the microphone's timeline.

A frame plays when it reaches the client or when the one before it ends, whichever is later;
pausing the client's playback holds what it had queued, cancelling drops it. Positions are
16 kHz samples of the microphone stream (what the echo canceller has received so far).
"""

from __future__ import annotations

import collections

import numpy as np
import numpy.typing as npt

from voicefleet.orchestrator.vad import VAD_RATE

Pcm16 = npt.NDArray[np.int16]


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
        self._skip = 0  # samples the client skipped that were not queued yet

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
        if self._skip:
            # The timeline is that much earlier than placed: a gap before this frame shrinks
            # first, then the frame's own head goes.
            closer = min(self._skip, begin - self.tail)
            begin -= closer
            skip = min(self._skip - closer, pcm.size)
            self._skip -= closer + skip
            pcm = pcm[skip:]
            if not pcm.size:
                return
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

    def shift(self, samples: int) -> None:
        """The client plays what it has queued `samples` later (negative: earlier) than
        placed: what is queued moves by as much, and so does what joins it without a gap
        (and what comes after a gap: the jump is the client's, not the network's)."""
        if samples > 0:
            self._samples.appendleft(np.zeros(samples, np.int16))
            self._size += samples
            return
        cut = min(-samples, self._size)
        if cut:
            self._cut_head(cut)
        self._skip = -samples - cut  # the rest comes out of the next frames

    def _cut_head(self, count: int) -> None:
        queued = np.concatenate(list(self._samples))
        count = min(count, queued.size)
        self._samples = collections.deque([queued[count:]] if count < queued.size else [])
        self._size = queued.size - count

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
