"""Joins inside a sentence: trim the silence a synthesis leaves at the edges of a segment.

A model pads each synthesis with silence (Piper's en_US-joe-medium: ~30-80 ms before the first
phoneme, ~100-250 ms after the last). Between two sentences that is the pause a speaker makes;
between two segments of one sentence (a word cut, `Segment.continues`) it is a gap the whole
sentence does not have. So the segment before such a join keeps `keep_ms` of its trailing
silence, the one after it `keep_ms` of its leading silence, each faded over a few ms so no
sample jumps where they meet.

Chunks stream through: a quiet run at the end of a chunk is held back until louder audio follows
(then it is a pause inside the speech and passes whole) or the segment ends (then it is trimmed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from voicefleet.audio.pcm import Samples

# Quieter than this (in the adapter's own scale) is silence. Absolute, not relative to the
# segment's peak, so chunking cannot move an edge; Piper pads at about -80 dBFS and its last
# phoneme decays through -50 within ~20 ms. Audio padded louder than this is not trimmed at all.
QUIET_DBFS = -50.0
KEEP_MS = 15.0
_FADE_MS = 3.0


def trim_join_edges(
    chunks: Iterable[Samples], rate: int, *, lead: bool, trail: bool, keep_ms: float = KEEP_MS
) -> Iterator[Samples]:
    """One segment's chunks, with its leading (`lead`) and trailing (`trail`) silence trimmed."""
    if not (lead or trail):
        yield from chunks
        return
    edges = _EdgeTrimmer(rate, lead, trail, keep_ms)
    for chunk in chunks:
        out = edges.push(chunk)
        if out.size:
            yield out
    out = edges.finish()
    if out.size:
        yield out


class _EdgeTrimmer:
    """Streaming state of trim_join_edges for one segment."""

    def __init__(self, rate: int, lead: bool, trail: bool, keep_ms: float) -> None:
        self._keep = int(rate * keep_ms / 1000)
        self._fade = max(1, int(rate * _FADE_MS / 1000))
        self._leading = lead  # no speech yet: what arrives is leading silence
        self._trail = trail
        self._held: Samples = np.zeros(0, dtype=np.float32)

    def push(self, chunk: Samples) -> Samples:
        """Audio ready to play; samples that may turn out to be the edge are held."""
        audio = np.concatenate([self._held, np.asarray(chunk, dtype=np.float32)])
        self._held = audio[:0]
        if self._leading:
            onset = _loud(audio)
            if onset.size == 0 or audio.size - _lead_in(onset, self._keep) < self._fade:
                # Nothing to play yet: keep what may become the lead-in (all of a short onset).
                begin = _lead_in(onset, self._keep) if onset.size else -self._keep
                self._held = audio[begin:] if self._keep or onset.size else audio[:0]
                return audio[:0]
            audio = _fade(audio[_lead_in(onset, self._keep) :], rising=True, length=self._fade)
            self._leading = False
        if not self._trail:
            return audio
        loud = _loud(audio)
        # Hold the quiet run at the end, and always the last few ms, which may need a fade.
        end = max(0, min(int(loud[-1]) + 1 if loud.size else 0, audio.size - self._fade))
        audio, self._held = audio[:end], audio[end:]
        return audio

    def finish(self) -> Samples:
        """End of the segment: the rest, keeping `keep_ms` of trailing silence, faded out."""
        audio = self._held
        if self._leading:  # speech shorter than a fade, or none at all
            onset = _loud(audio)
            if onset.size == 0:
                return audio[:0]
            audio = audio[_lead_in(onset, self._keep) :]
            audio = _fade(audio, rising=True, length=min(self._fade, audio.size))
        if not self._trail:
            return audio
        loud = _loud(audio)
        tail = audio[: (int(loud[-1]) + 1 if loud.size else 0) + self._keep]
        return _fade(tail, rising=False, length=min(self._fade, tail.size))


def _loud(audio: Samples) -> npt.NDArray[np.intp]:
    """Indexes of the samples above the silence threshold."""
    found: npt.NDArray[np.intp] = np.flatnonzero(np.abs(audio) > _QUIET)
    return found


def _lead_in(onset: npt.NDArray[np.intp], keep: int) -> int:
    """Where a trimmed start begins: `keep` samples before the first loud one."""
    return max(0, int(onset[0]) - keep)


_QUIET = 10 ** (QUIET_DBFS / 20)


def _fade(audio: Samples, *, rising: bool, length: int) -> Samples:
    """A raised-cosine fade over the first (rising) or last `length` samples."""
    if length <= 0:
        return audio
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, length, dtype=np.float32))).astype(
        np.float32
    )
    out = audio.copy()
    if rising:
        out[:length] *= ramp
    else:
        out[-length:] *= ramp[::-1]
    return out
