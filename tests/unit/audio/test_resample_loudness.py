import numpy as np
import soxr

from voicefleet.audio.loudness import (
    PeakLimiter,
    SegmentNormalizer,
    db_to_gain,
    integrated_lufs,
    true_peak_dbfs,
)
from voicefleet.audio.output import OutputChain
from voicefleet.audio.pcm import s16le_to_float
from voicefleet.audio.resample import StreamResampler


def speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Noise bursts with a syllable-rate envelope: a crest factor like speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    return (0.3 * rng.standard_normal(t.size) * envelope).astype(np.float32)


def test_streaming_resampler_matches_one_shot_without_clicks() -> None:
    rate_in, rate_out = 22_050, 48_000
    t = np.arange(rate_in) / rate_in
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    resampler = StreamResampler(rate_in, rate_out)
    pieces = [resampler.process(tone[i : i + 1000]) for i in range(0, tone.size, 1000)]
    streamed = np.concatenate([*pieces, resampler.flush()])
    whole = soxr.resample(tone, rate_in, rate_out, quality="HQ")
    assert abs(streamed.size - whole.size) <= 1
    n = min(streamed.size, whole.size)
    # Same signal, chunk boundaries invisible: no sample jumps beyond the tone's own slope.
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3
    max_step = 2 * np.pi * 440 / rate_out * 0.5
    assert np.max(np.abs(np.diff(streamed[100:-100]))) < max_step * 1.05


def test_limiter_never_exceeds_ceiling_and_leaves_quiet_audio_alone() -> None:
    limiter = PeakLimiter(-1.5, 48_000)
    loud = speechlike(2.0, 48_000) * 6
    out = limiter.process(loud)
    assert np.max(np.abs(out)) <= db_to_gain(-1.5) + 1e-6
    quiet = speechlike(1.0, 48_000) * 0.1
    assert np.array_equal(limiter.process(quiet), quiet)


def test_normalizer_reaches_target_from_quiet_and_loud_input() -> None:
    for scale in (0.1, 3.0):
        normalizer = SegmentNormalizer(-16.0, -1.5, 22_050)
        out = normalizer.process(speechlike(3.0, 22_050, seed=2) * scale)
        assert abs(integrated_lufs(out, 22_050) + 16.0) < 0.5
        assert np.max(np.abs(out)) <= db_to_gain(-1.5) + 1e-6


def test_output_chain_frames_are_exact_and_loudness_on_target() -> None:
    chain = OutputChain(22_050, -16.0, -1.5)
    frames: list[bytes] = []
    for seed in range(3):
        frames += chain.render(speechlike(1.3, 22_050, seed=seed) * 0.2)
    frames += chain.finish()
    assert {len(f) for f in frames} == {1920}
    audio = s16le_to_float(b"".join(frames))
    assert abs(integrated_lufs(audio, 48_000) + 16.0) <= 1.0
    assert true_peak_dbfs(audio, 48_000) <= -1.0


def test_finish_on_an_empty_stream_still_gives_one_final_frame() -> None:
    assert OutputChain(16_000, -16.0, -1.5).finish() == [bytes(1920)]
