"""Loudness: BS.1770 measurement (pyloudnorm), per-segment gain to a target, and a peak limiter.

Speech is normalized segment by segment (a segment is a sentence or clause synthesized whole), so
no look-ahead across segments is needed and the first frame is not delayed. Segments too short
to measure (< 400 ms) reuse the last gain of the stream.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyloudnorm
import soxr
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from voicefleet.audio.pcm import Samples

_MIN_MEASURE_S = 0.4
_MAX_GAIN_DB = 24.0
_SILENCE_LUFS = -70.0
_CORRECTIVE_PASSES = 3


def integrated_lufs(samples: npt.NDArray[np.floating], rate: int) -> float:
    """Integrated loudness (LUFS, BS.1770-4 gating); -inf when too short or silent."""
    if samples.size < int(_MIN_MEASURE_S * rate):
        return float("-inf")
    meter = pyloudnorm.Meter(rate)
    return float(meter.integrated_loudness(np.asarray(samples, dtype=np.float64)))


def true_peak_dbfs(samples: npt.NDArray[np.floating], rate: int) -> float:
    """True peak (dBTP) estimated with 4x oversampling, as BS.1770 describes."""
    if samples.size == 0:
        return float("-inf")
    upsampled = soxr.resample(np.asarray(samples, dtype=np.float64), rate, rate * 4, quality="VHQ")
    peak = float(np.max(np.abs(upsampled)))
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def db_to_gain(db: float) -> float:
    """Convert decibels to a linear amplitude factor."""
    return float(10.0 ** (db / 20.0))


class SegmentNormalizer:
    """Brings each whole segment to the target loudness under a peak ceiling.

    Gain first, then the limiter; while limiting costs more than `tolerance_db` of loudness, a
    corrective pass (at most three) raises the gain by the measured shortfall and limits again.
    """

    def __init__(
        self, target_lufs: float, ceiling_dbfs: float, rate: int, tolerance_db: float = 0.1
    ) -> None:
        self.target_lufs = target_lufs
        self.rate = rate
        self.tolerance_db = tolerance_db
        self.gain_db = 0.0
        self._limiter = PeakLimiter(ceiling_dbfs, rate)

    def process(self, segment: Samples) -> Samples:
        """Normalize one segment at the stream's native rate."""
        measured = integrated_lufs(segment, self.rate)
        if not (np.isfinite(measured) and measured > _SILENCE_LUFS):
            # Too short to measure: keep the stream's last gain.
            return self._limiter.process((segment * db_to_gain(self.gain_db)).astype(np.float32))
        gain_db = float(np.clip(self.target_lufs - measured, -_MAX_GAIN_DB, _MAX_GAIN_DB))
        out = self._limiter.process((segment * db_to_gain(gain_db)).astype(np.float32))
        for _ in range(_CORRECTIVE_PASSES):
            shortfall = self.target_lufs - integrated_lufs(out, self.rate)
            if not (np.isfinite(shortfall) and shortfall > self.tolerance_db):
                break
            gain_db = min(gain_db + shortfall, _MAX_GAIN_DB)
            out = self._limiter.process((segment * db_to_gain(gain_db)).astype(np.float32))
        self.gain_db = gain_db
        return out


class PeakLimiter:
    """Keeps every sample under a ceiling with a smooth gain curve.

    The needed gain min(1, ceiling/|x|) is spread by a minimum filter and then averaged over the
    same window, so the applied gain is never above the needed gain at any sample (no overshoot)
    and ramps over `window_ms` instead of clipping.
    """

    def __init__(self, ceiling_dbfs: float, rate: int, window_ms: float = 5.0) -> None:
        self.ceiling = db_to_gain(ceiling_dbfs)
        self.window = max(3, int(rate * window_ms / 1000) | 1)

    def process(self, block: Samples) -> Samples:
        """Limit one block; blocks are whole segments so look-ahead costs no latency."""
        magnitude = np.abs(block)
        if block.size == 0 or float(magnitude.max()) <= self.ceiling:
            return block
        needed = np.minimum(1.0, self.ceiling / np.maximum(magnitude, 1e-12))
        spread = minimum_filter1d(needed, size=self.window, mode="nearest")
        smooth = uniform_filter1d(spread, size=self.window, mode="nearest")
        # Averaging is exact only in real arithmetic; the final minimum removes rounding overshoot.
        gain = np.minimum(smooth, needed)
        limited: Samples = (block * gain).astype(np.float32)
        return limited
