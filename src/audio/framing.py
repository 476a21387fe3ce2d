"""Exact fixed-size framing: any chunk sizes in, frames of exactly N samples out."""

from __future__ import annotations

import numpy as np

from voicefleet.audio.format import FRAME_SAMPLES
from voicefleet.audio.pcm import Samples


class Framer:
    """Accumulates samples and hands out whole frames; flush() zero-pads the remainder."""

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_samples = frame_samples
        self._pending = np.zeros(0, dtype=np.float32)

    @property
    def pending_samples(self) -> int:
        """Samples held back, waiting for a whole frame."""
        return int(self._pending.size)

    def push(self, samples: Samples) -> list[Samples]:
        """Add samples; return every whole frame now available."""
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        whole = data.size // self.frame_samples * self.frame_samples
        frames = [data[i : i + self.frame_samples] for i in range(0, whole, self.frame_samples)]
        self._pending = data[whole:].copy()
        return frames

    def flush(self) -> list[Samples]:
        """Return the remainder zero-padded to one whole frame (nothing if empty)."""
        if self._pending.size == 0:
            return []
        frame = np.zeros(self.frame_samples, dtype=np.float32)
        frame[: self._pending.size] = self._pending
        self._pending = np.zeros(0, dtype=np.float32)
        return [frame]

    def clear(self) -> None:
        """Drop held samples (STOP)."""
        self._pending = np.zeros(0, dtype=np.float32)
