"""Barge-in detection: voice onset over a reply, then real speech or a false alarm.

Fed every microphone frame's voicing, whatever the segmenter's own state. Onset is `onset_ms`
voiced within a window a little longer; a candidate then becomes real after
`min_speech_ms` of voice, or a false alarm after `false_alarm_ms` of silence. The window
restarts after a false alarm, so one cough cannot hide the speech that follows it.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass

from voicefleet.orchestrator.vad import FRAME_MS

_FRAME_S = FRAME_MS / 1000


class Signal(enum.Enum):
    """What a frame decided."""

    CANDIDATE = "candidate"  # voice onset over the reply: hold it
    REAL = "real"  # the person is talking: drop the reply
    FALSE_ALARM = "false_alarm"  # it was noise: continue the reply


@dataclass
class _Candidate:
    onset_at: float
    voiced: int  # voiced frames since the onset window began
    silent: int = 0  # consecutive unvoiced frames


class BargeInDetector:
    """Onset window and candidate accounting (pure: frames in, signals out)."""

    def __init__(self, onset_ms: int, min_speech_ms: int, false_alarm_ms: int) -> None:
        self.onset_frames = max(1, onset_ms // FRAME_MS)
        self.min_speech_ms = min_speech_ms
        self.false_alarm_ms = false_alarm_ms
        self._window: collections.deque[tuple[float, bool]] = collections.deque(
            maxlen=self.onset_frames + 2
        )
        self._candidate: _Candidate | None = None
        self.last_at = 0.0
        self.real_onset_at = 0.0  # onset of the last candidate that proved real

    @property
    def pending(self) -> bool:
        """A candidate is being decided."""
        return self._candidate is not None

    @property
    def onset_at(self) -> float:
        """Stream time of the candidate's first voiced frame (0 without one)."""
        return self._candidate.onset_at if self._candidate is not None else 0.0

    def frame(self, at: float, voiced: bool, *, armed: bool) -> Signal | None:
        """One frame ending at `at`; `armed`: a reply is committed (else only listen)."""
        self.last_at = at
        self._window.append((at, voiced))
        candidate = self._candidate
        if not armed:
            return None
        if candidate is None:
            if sum(v for _, v in self._window) < self.onset_frames:
                return None
            first = next(t for t, v in self._window if v)
            self._candidate = _Candidate(round(first - _FRAME_S, 3), self.onset_frames)
            return Signal.CANDIDATE
        if voiced:
            candidate.voiced += 1
            candidate.silent = 0
            if candidate.voiced * FRAME_MS >= self.min_speech_ms:
                self.real_onset_at = candidate.onset_at
                self._candidate = None
                return Signal.REAL
            return None
        candidate.silent += 1
        if candidate.silent * FRAME_MS >= self.false_alarm_ms:
            self.reset()
            return Signal.FALSE_ALARM
        return None

    def drop(self) -> None:
        """Forget the candidate (the reply ended or was cancelled)."""
        self._candidate = None

    def reset(self) -> None:
        """Forget the candidate and the onset window."""
        self._candidate = None
        self._window.clear()
