"""Streaming encoders and the upload decoder: every format round-trips through FFmpeg at the
right length, a streamed WAV says its length is unknown, bad files are clear errors."""

from __future__ import annotations

import io
import struct
import wave

import av
import numpy as np
import pytest

from voicefleet.audio.decoding import AudioDecodeError, decode_audio
from voicefleet.audio.encoding import FORMATS, encoder_for, wav_header

RATE = 24_000


def tone(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def encode_in_frames(fmt: str, pcm: bytes, rate: int = RATE) -> tuple[bytes, int]:
    """The whole stream, and how many 20 ms frames went in before the first bytes came out."""
    encoder = encoder_for(fmt, rate)
    out, first = [], None
    step = rate // 50 * 2
    for index, start in enumerate(range(0, len(pcm), step)):
        data = encoder.encode(pcm[start : start + step])
        if data and first is None:
            first = index
        out.append(data)
    out.append(encoder.finish())
    return b"".join(out), first if first is not None else -1


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "pcm"])
def test_each_format_decodes_to_the_same_length(fmt: str) -> None:
    data, first = encode_in_frames(fmt, tone(1.0))
    samples = decode_audio(data, rate=16_000, max_seconds=5)
    assert abs(samples.size / 16_000 - 1.0) < 0.1, samples.size
    assert 0.15 < float(np.abs(samples).max()) < 0.35
    # Bytes come out while the audio goes in, not only at the end.
    assert 0 <= first < 10, first


def test_pcm_is_passed_through() -> None:
    pcm = tone(0.1)
    data, _ = encode_in_frames("pcm", pcm)
    assert data == pcm


def test_streamed_wav_header_says_unknown_length_and_reads() -> None:
    data, _ = encode_in_frames("wav", tone(0.5))
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.audio[0].rate == RATE
    assert len(data) == 44 + len(tone(0.5))


def test_a_sized_wav_header_reads_with_the_wave_module() -> None:
    pcm = tone(0.2)
    with wave.open(io.BytesIO(wav_header(RATE, len(pcm)) + pcm)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (RATE, 1, 2)
        assert reader.getnframes() == len(pcm) // 2


def test_empty_wav_still_has_a_header() -> None:
    assert encoder_for("wav", RATE).finish()[:4] == b"RIFF"


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown audio format 'ogg'"):
        encoder_for("ogg", RATE)


def test_stereo_44k_is_mixed_to_mono_16k() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(44_100)
        left = np.frombuffer(tone(0.5, 44_100), dtype="<i2")
        writer.writeframes(np.stack([left, left], axis=1).astype("<i2").tobytes())
    samples = decode_audio(buffer.getvalue(), max_seconds=5)
    assert samples.dtype == np.float32 and abs(samples.size - 8000) < 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not audio", "not an audio file"),
    ],
)
def test_bad_files_are_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(AudioDecodeError, match=message):
        decode_audio(data, max_seconds=5)


def test_decoding_stops_at_the_length_limit() -> None:
    data, _ = encode_in_frames("flac", tone(3.0))
    with pytest.raises(AudioDecodeError, match="longer than 1 s"):
        decode_audio(data, max_seconds=1)
