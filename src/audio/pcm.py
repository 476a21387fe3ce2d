"""Conversion between float32 samples in [-1, 1] and signed 16-bit little-endian PCM."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]

_S16_SCALE = 32768.0


class PcmFormatError(ValueError):
    """PCM bytes that cannot be s16le (e.g. an odd number of bytes)."""


def s16le_to_int16(pcm: bytes) -> npt.NDArray[np.int16]:
    """Decode s16le bytes into int16 samples (native byte order), unscaled."""
    if len(pcm) % 2:
        raise PcmFormatError(f"s16le PCM needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<i2").astype(np.int16)


def int16_to_float(samples: npt.NDArray[np.int16]) -> Samples:
    """int16 samples as float32 in [-1, 1)."""
    scaled: Samples = samples.astype(np.float32) / np.float32(_S16_SCALE)
    return scaled


def float_to_int16(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Float samples as int16, rounded and clipped to the representable range."""
    scaled = np.clip(np.rint(samples * _S16_SCALE), -32768, 32767)
    clipped: npt.NDArray[np.int16] = scaled.astype(np.int16)
    return clipped


def s16le_to_float(pcm: bytes) -> Samples:
    """Decode s16le bytes into float32 samples in [-1, 1)."""
    return int16_to_float(s16le_to_int16(pcm))


def float_to_s16le(samples: npt.NDArray[np.floating]) -> bytes:
    """Encode float samples as s16le, clipping to the representable range."""
    encoded: bytes = float_to_int16(samples).astype("<i2").tobytes()
    return encoded
