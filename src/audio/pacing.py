"""Real-time pacing of 20 ms frames with a bounded lead."""

from __future__ import annotations

import time
from collections.abc import Callable

from voicefleet.audio.format import FRAME_MS

_FRAME_S = FRAME_MS / 1000


class PacingClock:
    """Lets frames go at most `lead_s` ahead of real time, without catch-up bursts."""

    def __init__(self, lead_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lead_s = lead_s
        self._clock = clock
        self._start: float | None = None
        self._sent_s = 0.0
        self.late_s = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next frame may leave (<= 0: now)."""
        now = self._clock()
        if self._start is None:
            self._start = now
        ahead = self._sent_s - (now - self._start)
        self.late_s = max(0.0, -ahead)
        if ahead < 0:
            # Behind real time (synthesis stalled, or a pause): restart the clock here so the
            # listener's buffer refills by at most the lead, never by a burst of the backlog.
            self._start = now - self._sent_s
            ahead = 0.0
        return ahead - self.lead_s

    def sent(self) -> None:
        """Account one frame sent."""
        self._sent_s += _FRAME_S
