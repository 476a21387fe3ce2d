"""WAV files on the client side: the utterance it sends and the reply it records."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicefleet.orchestrator.protocol import MAX_INPUT_RATE, MIN_INPUT_RATE


class WavFormatError(Exception):
    """A WAV file the client cannot send: missing, unreadable, or not 16-bit PCM mono/stereo."""


@dataclass(frozen=True)
class WavAudio:
    """PCM16 mono little-endian samples and their rate."""

    pcm: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        """Duration of the audio."""
        return len(self.pcm) / 2 / self.sample_rate


def read_wav(path: Path) -> WavAudio:
    """Read a 16-bit PCM WAV (mono, or stereo mixed down) at 8-48 kHz."""
    try:
        with wave.open(str(path), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            data = reader.readframes(reader.getnframes())
    except FileNotFoundError:
        raise WavFormatError(f"{path}: no such file") from None
    except (OSError, EOFError, wave.Error) as error:
        raise WavFormatError(f"{path}: not a readable WAV file ({error})") from None
    if width != 2:
        raise WavFormatError(f"{path}: {8 * width}-bit samples; only 16-bit PCM is supported")
    if channels not in (1, 2):
        raise WavFormatError(f"{path}: {channels} channels; only mono or stereo is supported")
    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise WavFormatError(
            f"{path}: {rate} Hz; the sample rate must be {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz"
        )
    if channels == 2:
        stereo = np.frombuffer(data, dtype="<i2").reshape(-1, 2).astype(np.int32)
        data = (stereo.sum(axis=1) // 2).astype("<i2").tobytes()
    return WavAudio(pcm=data, sample_rate=rate)


def write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    """Write PCM16 mono little-endian samples as a WAV file."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
