"""Load figures a worker publishes: sessions, streams, queue depth, RTF, first-audio latency."""

from __future__ import annotations

import statistics
from collections import deque


class WorkerStats:
    """Rolling measurements, updated by streams, read by the registrar and GetCapabilities."""

    def __init__(self, window: int = 200, rtf_smoothing: float = 0.2) -> None:
        self.active_streams = 0
        self.queue_depth = 0
        self.frames_sent = 0
        self.rtf: float | None = None
        self._smoothing = rtf_smoothing
        self._first_audio_ms: deque[float] = deque(maxlen=window)

    def record_first_audio(self, ms: float) -> None:
        """Time from a stream's first text to its first frame sent."""
        self._first_audio_ms.append(ms)

    def record_synthesis(self, compute_s: float, audio_s: float) -> None:
        """One segment: seconds spent computing it and seconds of audio it gave."""
        if audio_s <= 0:
            return
        sample = compute_s / audio_s
        self.rtf = sample if self.rtf is None else self.rtf + self._smoothing * (sample - self.rtf)

    @property
    def first_audio_ms_p50(self) -> float | None:
        """Median first-audio latency over the window, None before any stream."""
        return statistics.median(self._first_audio_ms) if self._first_audio_ms else None
