"""Decoding uploaded audio files (WAV, MP3, Ogg/Opus, FLAC, M4A, WebM, ... whatever FFmpeg
reads, through PyAV) into 16 kHz mono float32 for the recognizer, bounded in length while it
decodes: a small file that expands into hours of audio stops at the limit."""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np

from voicefleet.audio.pcm import Samples


class AudioDecodeError(ValueError):
    """A file that is not audio FFmpeg can read, or is longer than allowed; says which."""


def decode_audio(data: bytes, *, rate: int = 16_000, max_seconds: float) -> Samples:
    """The file's first audio stream, mixed to mono and resampled to `rate`."""
    if not data:
        raise AudioDecodeError("the file is empty")
    limit = round(max_seconds * rate)
    try:
        container: Any = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as error:
        raise AudioDecodeError(f"not an audio file FFmpeg can read ({error})") from None
    try:
        if not container.streams.audio:
            raise AudioDecodeError("the file has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(audio=0):
                for converted in resampler.resample(frame):
                    total += _take(converted, parts)
                if total > limit:
                    raise AudioDecodeError(f"the audio is longer than {max_seconds:g} s")
            for converted in resampler.resample(None):
                total += _take(converted, parts)
        except av.error.FFmpegError as error:
            raise AudioDecodeError(f"the audio could not be decoded ({error})") from None
        if total > limit:
            raise AudioDecodeError(f"the audio is longer than {max_seconds:g} s")
    finally:
        container.close()
    if not parts:
        return np.zeros(0, dtype=np.float32)
    samples: Samples = np.concatenate(parts).astype(np.float32, copy=False)
    return samples


def _take(frame: Any, parts: list[np.ndarray]) -> int:
    samples = frame.to_ndarray().reshape(-1)
    parts.append(samples)
    return int(samples.size)
