import numpy as np
import pytest

from voicefleet.audio.format import FRAME_BYTES, FRAME_SAMPLES
from voicefleet.audio.framing import Framer
from voicefleet.audio.pcm import PcmFormatError, float_to_s16le, s16le_to_float


def test_framer_emits_exact_frames_across_odd_chunk_sizes() -> None:
    framer = Framer()
    rng = np.random.default_rng(1)
    signal = rng.uniform(-1, 1, 5 * FRAME_SAMPLES + 123).astype(np.float32)
    frames = []
    for start in range(0, signal.size, 777):
        frames += framer.push(signal[start : start + 777])
    assert [f.size for f in frames] == [FRAME_SAMPLES] * 5
    assert framer.pending_samples == 123
    tail = framer.flush()
    assert len(tail) == 1 and tail[0].size == FRAME_SAMPLES
    assert np.array_equal(np.concatenate(frames + tail)[: signal.size], signal)
    assert not tail[0][123:].any(), "padding must be zeros"
    assert framer.flush() == []


def test_pcm_roundtrip_and_frame_bytes() -> None:
    samples = np.linspace(-1, 1, FRAME_SAMPLES, dtype=np.float32)
    pcm = float_to_s16le(samples)
    assert len(pcm) == FRAME_BYTES
    assert np.allclose(s16le_to_float(pcm), samples, atol=1 / 32768)


def test_pcm_clips_instead_of_wrapping() -> None:
    pcm = float_to_s16le(np.array([2.0, -2.0], dtype=np.float32))
    assert np.frombuffer(pcm, "<i2").tolist() == [32767, -32768]


def test_odd_length_pcm_is_a_clear_error() -> None:
    with pytest.raises(PcmFormatError, match="even number of bytes, got 3"):
        s16le_to_float(b"\x00\x01\x02")
