"""Load figures a worker publishes: sessions, streams, queue depth, RTF, first-audio latency.

The registry record reads the rolling figures; the Prometheus metrics (WorkerMetrics) are fed
from the same calls, so each measurement is taken once."""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable

from voicefleet.tts.metrics import WorkerMetrics


class WorkerStats:
    """Rolling measurements, updated by streams, read by the registrar and GetCapabilities."""

    def __init__(
        self,
        window: int = 200,
        rtf_smoothing: float = 0.2,
        metrics: WorkerMetrics | None = None,
        waiting_for_thread: Callable[[], int] = lambda: 0,
    ) -> None:
        self.active_streams = 0
        # Segments due and not yet handed to a synthesis thread, kept by the streams that
        # render everything at once (a paced stream's later segments wait for their listener:
        # render_ahead_ms); see queue_depth.
        self.segments_due = 0
        # Calls waiting for a synthesis thread (the worker's executor's queue).
        self.waiting_for_thread = waiting_for_thread
        self.frames_sent = 0
        self.rtf: float | None = None
        self.metrics = metrics or WorkerMetrics()
        self.metrics.streams_active.set_function(lambda: self.active_streams)
        self.metrics.queue_depth.set_function(lambda: self.queue_depth)
        self._smoothing = rtf_smoothing
        self._first_audio_ms: deque[float] = deque(maxlen=window)

    @property
    def queue_depth(self) -> int:
        """Segments due and not synthesizing yet: waiting for a synthesis thread, or queued in
        a stream that renders everything at once (unpaced, or render_ahead_ms null).

        The backlog a router should avoid. A paced reply's later segments, which wait until
        their listener needs them (render_ahead_ms), are scheduled, not behind: they count only
        once they wait for a thread.
        """
        return self.segments_due + self.waiting_for_thread()

    def stream_started(self) -> None:
        """A Synthesize stream began."""
        self.active_streams += 1
        self.metrics.streams.inc()

    def stream_ended(self) -> None:
        """A Synthesize stream ended, however."""
        self.active_streams -= 1

    def frame_sent(self) -> None:
        """One 20 ms frame left the worker."""
        self.frames_sent += 1
        self.metrics.frames_sent.inc()

    def record_first_audio(self, ms: float) -> None:
        """Time from a stream's first text to its first frame sent."""
        self._first_audio_ms.append(ms)
        self.metrics.first_frame_seconds.observe(ms / 1000)

    def record_synthesis(self, compute_s: float, audio_s: float) -> None:
        """One segment: seconds spent computing it and seconds of audio it gave."""
        if audio_s <= 0:
            return
        self.metrics.audio_rendered.inc(audio_s)
        sample = compute_s / audio_s
        self.rtf = sample if self.rtf is None else self.rtf + self._smoothing * (sample - self.rtf)
        self.metrics.rtf.observe(sample)

    def record_control(self, command: str, seconds: float) -> None:
        """A PAUSE or STOP took `seconds` from its arrival to being obeyed by the sender."""
        self.metrics.control_seconds.labels(command=command).observe(seconds)

    @property
    def first_audio_ms_p50(self) -> float | None:
        """Median first-audio latency over the window, None before any stream."""
        return statistics.median(self._first_audio_ms) if self._first_audio_ms else None
