import numpy as np
import pytest

from tests.speech import piper_speech, with_silence
from voicefleet.orchestrator.vad import (
    EnergyGate,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadConfig,
    VoiceActivitySegmenter,
    frame_energy_db,
    percentile,
)

RATE = 16_000


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amplitude = 32768 * 10 ** (dbfs / 20)
    return (rng.standard_normal(int(seconds * RATE)) * amplitude).astype(np.int16)


def feed(segmenter: VoiceActivitySegmenter, audio: np.ndarray, chunk: int = 333) -> list[object]:
    events: list[object] = []
    for start in range(0, audio.size, chunk):
        events += segmenter.push(audio[start : start + chunk])
    return events


def test_speech_is_found_and_ends_after_the_hangover() -> None:
    speech = piper_speech("Hello there, this is a test of the detector.")
    audio = with_silence(speech, RATE, before_s=1.0, after_s=1.5)
    segmenter = VoiceActivitySegmenter(VadConfig(hangover_ms=500))
    events = feed(segmenter, audio)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == 1 and len(ends) == 1
    speech_end = 1.0 + speech.size / RATE
    assert 0.9 <= starts[0].at <= 1.3
    # Piper's own trailing silence is part of `speech`, so the voiced end is a little earlier.
    assert speech_end - 0.5 <= ends[0].at <= speech_end + 0.05
    assert abs(ends[0].decided_at - ends[0].at - 0.5) < 0.03
    assert ends[0].audio.size / RATE > speech.size / RATE * 0.8


def test_gate_rejected_frames_still_count_as_silence_for_the_end() -> None:
    """Loud background noise after speech is gated out and must not keep speech open."""
    speech = piper_speech("One two three four five.")
    background = noise(0.2, -60)
    audio = np.concatenate([background, speech, noise(2.0, -45, seed=1)])
    segmenter = VoiceActivitySegmenter(VadConfig(hangover_ms=400, gate_db=12))
    events = feed(segmenter, np.concatenate([noise(3.0, -45, seed=2), audio]))
    assert any(isinstance(e, SpeechEnded) for e in events), events


def test_a_pause_reports_then_resumes_without_ending() -> None:
    first = piper_speech("This is the first half.")
    second = piper_speech("And this is the second half.")
    gap = np.zeros(int(0.3 * RATE), np.int16)
    audio = with_silence(np.concatenate([first, gap, second]), RATE, before_s=0.5, after_s=1.0)
    segmenter = VoiceActivitySegmenter(VadConfig(hangover_ms=700, speculate_ms=100))
    events = feed(segmenter, audio)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "SpeechStarted" and kinds[-1] == "SpeechEnded"
    assert kinds.count("SpeechEnded") == 1
    assert "SpeechPaused" in kinds and "SpeechResumed" in kinds
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    assert paused.audio.size > first.size * 0.5


def test_state_scale_raises_the_gate_so_quiet_speech_is_ignored() -> None:
    speech = (piper_speech("Can you hear me now?").astype(np.float32) * 0.05).astype(np.int16)
    audio = with_silence(speech, RATE, before_s=1.0, after_s=1.0)
    config = VadConfig(gate_db=6, min_energy_dbfs=-70, state_scale={"speaking": 100.0})
    listening = VoiceActivitySegmenter(config)
    assert any(isinstance(e, SpeechStarted) for e in feed(listening, audio))
    speaking = VoiceActivitySegmenter(config)
    speaking.set_state("speaking")
    assert not any(isinstance(e, SpeechStarted) for e in feed(speaking, audio))


def test_noise_floor_adapts_to_the_background() -> None:
    gate = EnergyGate(VadConfig(noise_percentile=20, gate_db=9))
    for _ in range(100):
        gate.admit(-40.0)
    assert abs(gate.noise_floor_db + 40) < 0.1
    assert not gate.admit(-35.0) and gate.admit(-28.0)


def test_the_floor_is_at_most_a_refresh_old() -> None:
    gate = EnergyGate(VadConfig(noise_percentile=95, gate_db=9, noise_window_s=1.0))
    for _ in range(50):
        gate.admit(-40.0)
    assert abs(gate.noise_floor_db + 40) < 0.1
    floors = []
    for _ in range(EnergyGate.REFRESH_FRAMES + 1):  # louder frames: 95th percentile moves
        gate.admit(-30.0)
        floors.append(round(gate.noise_floor_db))
    refresh = EnergyGate.REFRESH_FRAMES
    assert floors == [-40] * (refresh - 1) + [-30, -30]


def test_resume_event_type_is_exported() -> None:
    assert SpeechResumed(at=1.0).at == 1.0


def test_a_shorter_hangover_set_during_a_pause_ends_that_pause_early() -> None:
    speech = piper_speech("Book a table for two.")
    audio = with_silence(speech, RATE, before_s=0.5, after_s=1.5)
    segmenter = VoiceActivitySegmenter(VadConfig(hangover_ms=1000, speculate_ms=100))
    events: list[object] = []
    applied = []
    for start in range(0, audio.size, 320):
        for event in segmenter.push(audio[start : start + 320]):
            events.append(event)
            if isinstance(event, SpeechPaused):
                assert not segmenter.set_hangover(200, event.at + 0.02), "another pause's"
                applied.append(segmenter.set_hangover(200, event.at))
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 1 and applied[-1]
    assert abs(ends[0].decided_at - ends[0].at - 0.2) < 0.03


def test_a_set_hangover_is_forgotten_when_speech_resumes() -> None:
    first = piper_speech("This is the first half.")
    second = piper_speech("And this is the second half.")
    gap = np.zeros(int(0.4 * RATE), np.int16)
    audio = with_silence(np.concatenate([first, gap, second]), RATE, before_s=0.5, after_s=1.5)
    segmenter = VoiceActivitySegmenter(VadConfig(hangover_ms=700, speculate_ms=100))
    events: list[object] = []
    pauses = 0
    for start in range(0, audio.size, 320):
        for event in segmenter.push(audio[start : start + 320]):
            events.append(event)
            if isinstance(event, SpeechPaused):
                pauses += 1
                # the first pause gets a long wait; later ones keep the configured hangover
                if pauses == 1:
                    assert segmenter.set_hangover(3000, event.at)
            if isinstance(event, SpeechResumed):
                assert segmenter.hangover_ms == 700
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 1
    assert abs(ends[0].decided_at - ends[0].at - 0.7) < 0.03


@pytest.mark.parametrize("size", [1, 2, 10, 199, 200])
@pytest.mark.parametrize("q", [0.0, 20.0, 50.0, 95.0, 100.0])
def test_the_noise_floor_percentile_is_numpys(size: int, q: float) -> None:
    values = np.random.default_rng(size).normal(-50, 8, size)
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)


def test_frame_energy_matches_the_float64_mean_power() -> None:
    frame = np.random.default_rng(3).integers(-32768, 32767, 320).astype(np.int16)
    exact = float(np.mean((frame.astype(np.float64) / 32768.0) ** 2))
    assert frame_energy_db(frame) == pytest.approx(10 * np.log10(exact), abs=1e-4)
    assert frame_energy_db(np.zeros(320, np.int16)) == pytest.approx(-120.0)
