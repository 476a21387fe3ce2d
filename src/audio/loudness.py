"""Loudness: BS.1770 measurement, per-segment gain to a target, and a peak limiter.

Speech is normalized segment by segment (a segment is a sentence or clause synthesized whole), so
no look-ahead across segments is needed and the first frame is not delayed. Segments too short
to measure (< 400 ms) reuse the last gain of the stream.

`integrated_lufs` is pyloudnorm's reference measurement (tests and benchmarks use it). The hot
path uses `GatedLoudness`, the same BS.1770-4 computation vectorized (K-weighting once per
segment, block energies by cumulative sums), which agrees with pyloudnorm to ~0.1 LU and costs
a fraction of it: the first frame of every reply waits for it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
import pyloudnorm
import soxr
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import sosfilt

from voicefleet.audio.pcm import Samples

_MIN_MEASURE_S = 0.4
_MAX_GAIN_DB = 24.0
_SILENCE_LUFS = -70.0
_CORRECTIVE_PASSES = 4
FloatArray = npt.NDArray[np.float64]


def integrated_lufs(samples: npt.NDArray[np.floating], rate: int) -> float:
    """Integrated loudness (LUFS, BS.1770-4 gating, pyloudnorm); -inf when too short."""
    if samples.size < int(_MIN_MEASURE_S * rate):
        return float("-inf")
    return float(_meter(rate).integrated_loudness(np.asarray(samples, dtype=np.float64)))


@functools.cache
def _meter(rate: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(rate)


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


@functools.cache
def _k_weighting(rate: int) -> FloatArray:
    """BS.1770 K-weighting (high shelf + high pass) as second-order sections for any rate."""
    shelf_k = math.tan(math.pi * 1681.974450955533 / rate)
    shelf_q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + shelf_k / shelf_q + shelf_k**2
    shelf = [
        (vh + vb * shelf_k / shelf_q + shelf_k**2) / a0,
        2 * (shelf_k**2 - vh) / a0,
        (vh - vb * shelf_k / shelf_q + shelf_k**2) / a0,
        1.0,
        2 * (shelf_k**2 - 1) / a0,
        (1 - shelf_k / shelf_q + shelf_k**2) / a0,
    ]
    pass_k = math.tan(math.pi * 38.13547087602444 / rate)
    pass_q = 0.5003270373238773
    a0 = 1 + pass_k / pass_q + pass_k**2
    high_pass = [
        1.0,
        -2.0,
        1.0,
        1.0,
        2 * (pass_k**2 - 1) / a0,
        (1 - pass_k / pass_q + pass_k**2) / a0,
    ]
    return np.array([shelf, high_pass])


class GatedLoudness:
    """Vectorized BS.1770-4 integrated loudness of K-weighted energy, for the hot path."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._sos = _k_weighting(rate)
        self._block = int(0.4 * rate)
        self._step = int(0.1 * rate)

    def weighted_energy(self, samples: Samples) -> FloatArray:
        """Per-sample K-weighted energy (square of the filtered signal)."""
        filtered: FloatArray = sosfilt(self._sos, np.asarray(samples, dtype=np.float64))
        return filtered * filtered

    def lufs(self, energy: FloatArray) -> float:
        """Gated integrated loudness of per-sample energy; -inf when too short or silent."""
        if energy.size < self._block:
            return float("-inf")
        cumulative = np.concatenate([[0.0], np.cumsum(energy)])
        starts = np.arange(0, energy.size - self._block + 1, self._step)
        blocks = (cumulative[starts + self._block] - cumulative[starts]) / self._block
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10 * np.log10(blocks)
        above_absolute = blocks[loudness > -70.0]
        if above_absolute.size == 0:
            return float("-inf")
        relative_gate = -0.691 + 10 * np.log10(above_absolute.mean()) - 10.0
        gated = blocks[(loudness > -70.0) & (loudness > relative_gate)]
        return float(-0.691 + 10 * np.log10(gated.mean()))


class SegmentNormalizer:
    """Brings each whole segment to the target loudness under a peak ceiling.

    The segment is K-weighted once. Gain, then the limiter's gain curve; while limiting costs
    more than `tolerance_db` of loudness, a corrective pass raises the gain by the shortfall.
    Each pass re-measures by scaling the stored K-weighted energy with the limiter's (slowly
    varying) gain curve instead of filtering again.
    """

    def __init__(
        self, target_lufs: float, ceiling_dbfs: float, rate: int, tolerance_db: float = 0.1
    ) -> None:
        self.target_lufs = target_lufs
        self.rate = rate
        self.tolerance_db = tolerance_db
        self.gain_db = 0.0
        self._limiter = PeakLimiter(ceiling_dbfs, rate)
        self._meter = GatedLoudness(rate)

    def process(self, segment: Samples) -> Samples:
        """Normalize one segment at the stream's native rate."""
        energy = self._meter.weighted_energy(segment)
        measured = self._meter.lufs(energy)
        if math.isfinite(measured) and measured > _SILENCE_LUFS:
            gain_db = float(np.clip(self.target_lufs - measured, -_MAX_GAIN_DB, _MAX_GAIN_DB))
            for _ in range(_CORRECTIVE_PASSES):
                curve = self._limiter.gain_curve(segment * db_to_gain(gain_db))
                if curve is None:
                    break
                limited = self._meter.lufs(energy * (curve * curve)) + gain_db
                shortfall = self.target_lufs - limited
                if shortfall <= self.tolerance_db or gain_db >= _MAX_GAIN_DB:
                    break
                gain_db = min(gain_db + shortfall, _MAX_GAIN_DB)
            self.gain_db = gain_db
        # Too short or silent to measure: keep the stream's last gain.
        return self._limiter.process((segment * db_to_gain(self.gain_db)).astype(np.float32))


class PeakLimiter:
    """Keeps every sample under a ceiling with a smooth gain curve.

    The needed gain min(1, ceiling/|x|) is spread by a minimum filter and then averaged over the
    same window, so the applied gain is never above the needed gain at any sample (no overshoot)
    and ramps over `window_ms` instead of clipping.
    """

    def __init__(self, ceiling_dbfs: float, rate: int, window_ms: float = 5.0) -> None:
        self.ceiling = db_to_gain(ceiling_dbfs)
        self.window = max(3, int(rate * window_ms / 1000) | 1)

    def gain_curve(self, block: npt.NDArray[np.floating]) -> FloatArray | None:
        """The per-sample gain the limiter would apply; None when no sample exceeds the ceiling."""
        magnitude = np.abs(block)
        if block.size == 0 or float(magnitude.max()) <= self.ceiling:
            return None
        needed = np.minimum(1.0, self.ceiling / np.maximum(magnitude, 1e-12))
        spread = minimum_filter1d(needed, size=self.window, mode="nearest")
        smooth = uniform_filter1d(spread, size=self.window, mode="nearest")
        # Averaging is exact only in real arithmetic; the final minimum removes rounding overshoot.
        curve: FloatArray = np.minimum(smooth, needed).astype(np.float64)
        return curve

    def process(self, block: Samples) -> Samples:
        """Limit one block; blocks are whole segments so look-ahead costs no latency."""
        curve = self.gain_curve(block)
        if curve is None:
            return block
        limited: Samples = (block * curve).astype(np.float32)
        return limited
