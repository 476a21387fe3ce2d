"""Streaming audio encoders for the standard APIs: s16le mono PCM in, a file format's bytes
out as soon as the encoder has them (never the whole reply first).

`pcm` and `wav` are written here; `mp3`, `opus` (Ogg), `flac` and `aac` (ADTS) by FFmpeg's
encoders through PyAV (a dependency of faster-whisper: libmp3lame, libopus, FLAC, FFmpeg's AAC).
A streamed WAV cannot know its length: its header says 0xFFFFFFFF, as streaming servers and
OpenAI's own API do, and players read to the end.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import av
import numpy as np

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


class AudioEncoder(ABC):
    """Encodes one stream of s16le mono PCM at `rate`."""

    def __init__(self, rate: int) -> None:
        self.rate = rate

    @abstractmethod
    def encode(self, pcm: bytes) -> bytes:
        """Encode a chunk; returns the bytes ready now (possibly none)."""

    @abstractmethod
    def finish(self) -> bytes:
        """End the stream; returns the remaining bytes."""


class PcmEncoder(AudioEncoder):
    """Raw s16le, as it comes."""

    def encode(self, pcm: bytes) -> bytes:
        """The chunk itself."""
        return pcm

    def finish(self) -> bytes:
        """Nothing is held back."""
        return b""


class WavEncoder(AudioEncoder):
    """A RIFF/WAVE header with unknown (maximal) sizes, then the PCM."""

    def __init__(self, rate: int) -> None:
        super().__init__(rate)
        self._header_sent = False

    def encode(self, pcm: bytes) -> bytes:
        """The header before the first chunk, then the PCM."""
        if self._header_sent:
            return pcm
        self._header_sent = True
        return wav_header(self.rate) + pcm

    def finish(self) -> bytes:
        """A header even for a reply with no audio."""
        return self.encode(b"")


def wav_header(rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte PCM s16le mono WAV header; data_bytes None: unknown (streamed)."""
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


class _Collected:
    """A write-only file object that hands out what was written since the last take."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class FFmpegEncoder(AudioEncoder):
    """An FFmpeg encoder and muxer through PyAV, writing into memory as it goes."""

    codec: ClassVar[str]
    container: ClassVar[str]
    rates: ClassVar[tuple[int, ...]] = ()  # rates the codec accepts; () any
    bit_rate: ClassVar[int | None] = None

    def __init__(self, rate: int) -> None:
        super().__init__(rate)
        self._out = _Collected()
        self._container: Any = av.open(self._out, mode="w", format=self.container)
        encode_rate = rate if not self.rates or rate in self.rates else max(self.rates)
        stream: Any = self._container.add_stream(self.codec, rate=encode_rate, layout="mono")
        if self.bit_rate:
            stream.bit_rate = self.bit_rate
        self._stream = stream
        self._resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout="mono", rate=encode_rate
        )
        self._pts = 0
        self._closed = False

    def encode(self, pcm: bytes) -> bytes:
        """Feed the codec; return whatever the muxer wrote."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self._pts
            self._pts += samples.size
            for converted in self._resampler.resample(frame):
                self._mux(converted)
        return self._out.take()

    def finish(self) -> bytes:
        """Flush the codec and close the container."""
        if not self._closed:
            self._closed = True
            for converted in self._resampler.resample(None):
                self._mux(converted)
            self._mux(None)
            self._container.close()
        return self._out.take()

    def _mux(self, frame: Any) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


class Mp3Encoder(FFmpegEncoder):
    """MP3 (LAME), 64 kb/s mono."""

    codec = "libmp3lame"
    container = "mp3"
    rates = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
    bit_rate = 64_000


class OpusEncoder(FFmpegEncoder):
    """Opus in Ogg, 32 kb/s mono (Opus runs at 8/12/16/24/48 kHz)."""

    codec = "libopus"
    container = "ogg"
    rates = (8000, 12000, 16000, 24000, 48000)
    bit_rate = 32_000


class FlacEncoder(FFmpegEncoder):
    """FLAC, lossless."""

    codec = "flac"
    container = "flac"


class AacEncoder(FFmpegEncoder):
    """AAC-LC in ADTS (streamable, unlike MP4), 64 kb/s mono."""

    codec = "aac"
    container = "adts"
    rates = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
    bit_rate = 64_000


_ENCODERS: dict[str, type[AudioEncoder]] = {
    "pcm": PcmEncoder,
    "wav": WavEncoder,
    "mp3": Mp3Encoder,
    "opus": OpusEncoder,
    "flac": FlacEncoder,
    "aac": AacEncoder,
}


def encoder_for(fmt: str, rate: int) -> AudioEncoder:
    """A new encoder of `fmt` (one of FORMATS) for s16le mono at `rate`."""
    try:
        return _ENCODERS[fmt](rate)
    except KeyError:
        raise ValueError(f"unknown audio format {fmt!r} (known: {', '.join(FORMATS)})") from None
