"""Real speech for tests and benchmarks: the bundled Piper voice, espeak-ng, and WAV files."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

from voicefleet.audio.pcm import Samples
from voicefleet.tts.adapters.base import ModelSpec, SynthesisOptions
from voicefleet.tts.adapters.piper import PiperAdapter

Int16Samples = npt.NDArray[np.int16]


class SpeechToolMissing(RuntimeError):
    """A speech generator this machine lacks (espeak-ng)."""


def to_int16(samples: npt.NDArray[np.floating]) -> Int16Samples:
    """Float samples in [-1, 1] to int16, clipping."""
    scaled = np.clip(np.rint(samples * 32768.0), -32768, 32767)
    converted: Int16Samples = scaled.astype(np.int16)
    return converted


def to_float(samples: Int16Samples) -> Samples:
    """int16 samples to float32 in [-1, 1)."""
    return (samples.astype(np.float32) / 32768.0).astype(np.float32)


def _resample(samples: Samples, in_rate: int, out_rate: int) -> Samples:
    if in_rate == out_rate:
        return samples
    out: Samples = soxr.resample(samples, in_rate, out_rate).astype(np.float32)
    return out


@functools.cache
def _piper() -> PiperAdapter:
    # Loading the voice costs ~0.5 s; every test and benchmark shares one.
    adapter = PiperAdapter(ModelSpec(id="joe", adapter="piper", options={"threads": 2}))
    adapter.load()
    return adapter


# Piper samples noise on every call; without it the same text always gives the same samples,
# so an accuracy check that passes once passes every time.
_NO_NOISE = SynthesisOptions(values={"noise_scale": 0.0, "noise_w_scale": 0.0})


def piper_speech(text: str, rate: int = 16000, *, deterministic: bool = True) -> Int16Samples:
    """Speak text with the bundled Piper voice, resampled.

    Deterministic (noise-free) by default: Piper samples noise, so the same text can come out
    with a pause long enough to end a turn one run in twenty; tests must see the same audio."""
    adapter = _piper()
    options = _NO_NOISE if deterministic else SynthesisOptions()
    chunks = list(adapter.synthesize(text, options))
    if not chunks:
        raise ValueError(f"Piper produced no audio for {text!r}")
    audio = np.concatenate(chunks).astype(np.float32)
    return to_int16(_resample(audio, adapter.sample_rate, rate))


def espeak_speech(
    text: str, rate: int = 16000, words_per_minute: int = 150, voice: str = "en-us"
) -> Int16Samples:
    """Speak text with espeak-ng (a formant voice unlike Piper's, in any of its languages),
    resampled to rate."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise SpeechToolMissing("espeak-ng is not installed: apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(
            [binary, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=30,
        )
        samples, native_rate = read_wav(path)
    return to_int16(_resample(to_float(samples), native_rate, rate))


def with_silence(
    samples: Int16Samples, rate: int, before_s: float = 0.0, after_s: float = 0.0
) -> Int16Samples:
    """Pad samples with digital silence before and after."""
    before = np.zeros(round(before_s * rate), dtype=np.int16)
    after = np.zeros(round(after_s * rate), dtype=np.int16)
    return np.concatenate([before, samples.astype(np.int16), after])


def trim(clip: Int16Samples, margin_s: float = 0.03, rate: int = 16000) -> Int16Samples:
    """The clip without its leading and trailing silence (a small margin kept)."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > 300)
    if not loud.size:
        return clip
    margin = int(rate * margin_s)
    return clip[max(0, loud[0] - margin) : loud[-1] + margin]


def write_wav(path: Path | str, samples: Int16Samples, rate: int) -> None:
    """Write mono 16-bit PCM samples as a WAV file."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())


def read_wav(path: Path | str) -> tuple[Int16Samples, int]:
    """Read a 16-bit PCM WAV file as mono int16 (channels mixed down) and its rate."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * handle.getsampwidth()}-bit")
        channels = handle.getnchannels()
        rate = handle.getframerate()
        frames = handle.readframes(handle.getnframes())
    samples = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        mixed = samples.reshape(-1, channels).astype(np.int32).mean(axis=1)
        return np.rint(mixed).astype(np.int16), rate
    return samples.astype(np.int16), rate
