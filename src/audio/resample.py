"""Streaming sample-rate conversion with soxr: one stateful converter per stream, so
consecutive chunks join without clicks and no chunk pays a whole-signal FFT."""

from __future__ import annotations

import numpy as np
import soxr

from voicefleet.audio.pcm import Samples


class StreamResampler:
    """Converts a mono float32 stream from in_rate to out_rate chunk by chunk."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(
                in_rate, out_rate, 1, dtype="float32", quality=quality
            )

    def process(self, samples: Samples) -> Samples:
        """Convert one chunk; some output may be held back until the next chunk or flush()."""
        chunk = np.ascontiguousarray(samples, dtype=np.float32)
        if self._stream is None:
            return chunk
        out: Samples = self._stream.resample_chunk(chunk, last=False)
        return out

    def flush(self) -> Samples:
        """Return what the converter still holds; the stream ends here."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out: Samples = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return out
