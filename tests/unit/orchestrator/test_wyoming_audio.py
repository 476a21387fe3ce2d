"""Audio sent to be transcribed: every PCM width and channel count to mono float, any rate to
16 kHz as it arrives, and the bounds on one utterance."""

from __future__ import annotations

import numpy as np
import pytest
from wyoming.audio import AudioFormat

from voicefleet.orchestrator.transports.wyoming_audio import Utterance, to_mono_float
from voicefleet.orchestrator.transports.wyoming_events import WyomingError


def test_each_width_decodes_to_the_same_values() -> None:
    half, quarter_down = 0.5, -0.25
    u8 = bytes([128 + 64, 128 - 32])
    s16 = np.array([16384, -8192], "<i2").tobytes()
    s24 = bytes([0, 0, 0x40, 0, 0, 0xE0])  # 0x400000, 0xE00000 (-0x200000)
    s32 = np.array([2**30, -(2**29)], "<i4").tobytes()
    for width, pcm in ((1, u8), (2, s16), (3, s24), (4, s32)):
        samples = to_mono_float(pcm, width, 1)
        assert samples.dtype == np.float32
        np.testing.assert_allclose(samples, [half, quarter_down], err_msg=f"width {width}")


def test_channels_are_averaged() -> None:
    stereo = np.array([16384, 0, -16384, -16384], "<i2").tobytes()
    np.testing.assert_allclose(to_mono_float(stereo, 2, 2), [0.25, -0.5])


def fmt(rate: int = 48_000, width: int = 2, channels: int = 1) -> AudioFormat:
    return AudioFormat(rate=rate, width=width, channels=channels)


def tone(rate: int, seconds: float) -> bytes:
    t = np.arange(round(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 16000).astype("<i2").tobytes()


def test_any_rate_comes_out_at_16_khz_chunk_by_chunk() -> None:
    utterance = Utterance(fmt(48_000), max_s=5)
    pcm = tone(48_000, 1.0)
    for start in range(0, len(pcm), 1920):  # 20 ms chunks
        utterance.add(fmt(48_000), pcm[start : start + 1920])
    assert utterance.seconds == pytest.approx(1.0)
    audio = utterance.finish()
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 16_000) <= 2
    # Still a 440 Hz tone of the same loudness (nothing lost or doubled between chunks).
    spectrum = np.abs(np.fft.rfft(audio[1000:15000]))
    assert np.argmax(spectrum) * 16_000 / 14_000 == pytest.approx(440, abs=3)
    assert float(np.sqrt(np.mean(audio[1000:15000] ** 2))) == pytest.approx(0.345, rel=0.05)


def test_a_chunk_in_another_format_or_of_partial_frames_is_refused_and_not_kept() -> None:
    utterance = Utterance(fmt(16_000, 2, 2), max_s=5)
    with pytest.raises(WyomingError) as changed:
        utterance.add(fmt(16_000, 2, 1), b"\0\0" * 10)
    assert changed.value.code == "audio_format_changed"
    with pytest.raises(WyomingError) as partial:
        utterance.add(fmt(16_000, 2, 2), b"\0" * 6)
    assert partial.value.code == "bad_audio"
    assert utterance.seconds == 0
    utterance.add(fmt(16_000, 2, 2), b"\0" * 8)
    assert utterance.finish().size == 2


def test_more_than_max_s_is_refused_before_it_is_kept() -> None:
    utterance = Utterance(fmt(16_000), max_s=1.0)
    second = bytes(32_000)
    utterance.add(fmt(16_000), second)
    with pytest.raises(WyomingError) as caught:
        utterance.add(fmt(16_000), b"\0\0")
    assert caught.value.code == "audio_too_long" and "1 s" in caught.value.text
    assert utterance.seconds == 1.0
    assert utterance.finish().size == 16_000
