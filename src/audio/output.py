"""The worker's output chain: native-rate segments in, exact 20 ms 48 kHz s16le frames out.

native PCM -> loudness (per segment, at the native rate) -> soxr to 48 kHz (one stateful
stream, so segment joins are seamless) -> safety limiter -> 960-sample frames -> s16le bytes.
"""

from __future__ import annotations

from voicefleet.audio.format import FRAME_SAMPLES, OUTPUT_SAMPLE_RATE
from voicefleet.audio.framing import Framer
from voicefleet.audio.loudness import PeakLimiter, SegmentNormalizer
from voicefleet.audio.pcm import Samples, float_to_s16le
from voicefleet.audio.resample import StreamResampler

# Inter-sample (true) peaks sit up to ~0.5 dB above sample peaks: keep the 48 kHz limiter a
# little under the ceiling so true peak stays within ceiling + 0.5 dB.
_SAFETY_MARGIN_DB = -0.1


class OutputChain:
    """Turns one stream's native-rate segments into final-format frames."""

    def __init__(self, native_rate: int, target_lufs: float, ceiling_dbfs: float) -> None:
        self.native_rate = native_rate
        self._normalizer = SegmentNormalizer(target_lufs, ceiling_dbfs, native_rate)
        self._resampler = StreamResampler(native_rate, OUTPUT_SAMPLE_RATE)
        self._limiter = PeakLimiter(ceiling_dbfs + _SAFETY_MARGIN_DB, OUTPUT_SAMPLE_RATE)
        self._framer = Framer(FRAME_SAMPLES)

    def render(self, segment: Samples) -> list[bytes]:
        """Process one whole segment (or adapter chunk); return the complete frames."""
        normalized = self._normalizer.process(segment)
        return self._frames(self._resampler.process(normalized))

    def finish(self) -> list[bytes]:
        """End of stream: flush the resampler and pad the last frame (always >= 1 frame)."""
        frames = self._frames(self._resampler.flush())
        frames += [float_to_s16le(f) for f in self._framer.flush()]
        if not frames:
            frames.append(bytes(FRAME_SAMPLES * 2))
        return frames

    def _frames(self, samples: Samples) -> list[bytes]:
        limited = self._limiter.process(samples)
        return [float_to_s16le(frame) for frame in self._framer.push(limited)]
