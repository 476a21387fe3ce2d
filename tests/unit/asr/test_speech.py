"""The speech fixtures the ASR tests rely on (tests/speech.py)."""

from pathlib import Path

import numpy as np

from tests.speech import espeak_speech, piper_speech, read_wav, with_silence, write_wav


def test_wav_round_trip(tmp_path: Path) -> None:
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype=np.int16)
    write_wav(tmp_path / "a.wav", samples, 22050)
    read, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050
    assert read.dtype == np.int16
    assert np.array_equal(read, samples)


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    import wave

    frames = np.array([[100, 300], [-200, -400], [32767, 32767]], dtype="<i2")
    with wave.open(str(tmp_path / "s.wav"), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(frames.tobytes())
    mono, rate = read_wav(tmp_path / "s.wav")
    assert rate == 8000
    assert mono.tolist() == [200, -300, 32767]


def test_with_silence_pads_both_ends() -> None:
    padded = with_silence(np.full(10, 7, dtype=np.int16), 1000, before_s=0.005, after_s=0.002)
    assert padded.tolist() == [0] * 5 + [7] * 10 + [0] * 2


def test_generated_speech_has_the_requested_rate_and_a_plausible_length() -> None:
    piper = piper_speech("Hello there, how are you?", rate=16000)
    espeak = espeak_speech("Hello there, how are you?", rate=8000)
    for samples, rate in ((piper, 16000), (espeak, 8000)):
        assert samples.dtype == np.int16
        assert 0.8 < samples.size / rate < 4.0
        assert np.abs(samples.astype(np.int32)).max() > 3000  # not silence
    # Deterministic by default (tests must see the same audio); Piper's noise only on request.
    assert np.array_equal(piper, piper_speech("Hello there, how are you?"))
    noisy = piper_speech("Hello there, how are you?", deterministic=False)
    assert not np.array_equal(piper, noisy)
    slow = espeak_speech("Hello there, how are you?", words_per_minute=100)
    assert slow.size > espeak.size * 2 * 1.2  # same text, slower, at twice the rate
