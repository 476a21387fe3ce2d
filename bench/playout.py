"""A client's jitter buffer replayed from frame arrival times: which reply frames came too late.

The rule (what bench/load.py counts as playback underruns):
- a reply's playout starts when its first frame arrives plus the buffer (60 ms), and frame i
  (0-based) is due at that start + i x 20 ms; a frame that arrives after its due time is an
  underrun frame (the listener hears a gap), and a reply with one or more is an underrun reply;
- `audio_pause` ends a timeline; the frames that arrive after it are buffered, and
  `audio_resume` starts a new timeline with them: its playout starts at the later of the resume
  and the first of those frames' arrival, plus the buffer, and its frames are due every 20 ms
  from there;
- `audio_cancel` drops the rest: frames after it are never played, so never late; a pause never
  resumed does the same.
The server sends frames ahead of real time (`pipeline.playback_lead_ms`, 120 ms), so a reply's
first frames arrive in a burst; lateness shows only when it falls behind for longer than that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FRAME_S = 0.020
BUFFER_S = 0.060


@dataclass(frozen=True)
class Interruption:
    """An audio_pause / audio_resume / audio_cancel inside a reply."""

    kind: str  # pause | resume | cancel
    at: float  # arrival, same clock as the frames
    frames_before: int  # frames of this reply that arrived before it


def late_frames(
    arrivals: Sequence[float],
    not_before: float | None = None,
    buffer_s: float = BUFFER_S,
    frame_s: float = FRAME_S,
) -> int:
    """Frames of one timeline that arrive after their due time (see the module docstring)."""
    if not arrivals:
        return 0
    start = max(arrivals[0], arrivals[0] if not_before is None else not_before) + buffer_s
    return sum(1 for index, at in enumerate(arrivals) if at > start + index * frame_s)


def timelines(
    arrivals: Sequence[float], interruptions: Sequence[Interruption] = ()
) -> list[tuple[Sequence[float], float | None]]:
    """The reply's frames split into played timelines: (arrivals, resumed at or None)."""
    played: list[tuple[Sequence[float], float | None]] = []
    first, resumed_at, playing = 0, None, True
    for mark in sorted(interruptions, key=lambda m: (m.frames_before, m.at)):
        if mark.kind == "resume" and not playing:
            resumed_at, playing = mark.at, True
        elif mark.kind in ("pause", "cancel") and playing:
            played.append((arrivals[first : mark.frames_before], resumed_at))
            first, playing = mark.frames_before, False
        if mark.kind == "cancel":
            break
    else:
        if playing:
            played.append((arrivals[first:], resumed_at))
    return [(frames, at) for frames, at in played if frames]


def underruns(arrivals: Sequence[float], interruptions: Sequence[Interruption] = ()) -> int:
    """Underrun frames of one reply: late frames over its played timelines."""
    return sum(late_frames(frames, at) for frames, at in timelines(arrivals, interruptions))
