"""The echo canceller: the far end placed as the client plays it, and AEC3 on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from tests.speakerphone import simulate
from tests.speech import espeak_speech, piper_speech
from voicefleet.orchestrator.audio_in import AudioIn
from voicefleet.orchestrator.echo import EchoCanceller, EchoConfig, cancels_echo
from voicefleet.orchestrator.echo_guard import ConvergenceGuard, DelayTracker
from voicefleet.orchestrator.far_end import FarEnd
from voicefleet.orchestrator.turn_events import Heard
from voicefleet.orchestrator.vad import SpeechEnded, VadConfig, VoiceActivitySegmenter

RATE = 16_000
REPLY = (
    "Here is what I found about the weather in Paris today: it will be sunny with a light "
    "breeze, and the temperature will reach twenty degrees in the afternoon."
)


def ramp(n: int, start: int = 1) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)


# -- the far end's timeline --------------------------------------------------------------


def test_a_frame_plays_when_it_arrives_and_the_next_when_it_ends() -> None:
    far = FarEnd()
    far.play(ramp(100), at=50)
    far.play(ramp(100, 101), at=60)  # sent ahead of real time: queued behind the first
    out = far.take(0, 300)
    assert not out[:50].any()
    assert list(out[50:250]) == list(range(1, 201))
    assert not out[250:].any()


def test_a_frame_after_a_gap_plays_when_it_arrives() -> None:
    far = FarEnd()
    far.play(ramp(10), at=0)
    far.play(ramp(10, 11), at=30)  # an underrun: the client had nothing to play in between
    out = far.take(0, 50)
    assert list(out[:10]) == list(range(1, 11))
    assert not out[10:30].any()
    assert list(out[30:40]) == list(range(11, 21))


def test_the_configured_delay_shifts_the_far_end() -> None:
    far = FarEnd(delay_samples=20)
    far.play(ramp(10), at=0)
    out = far.take(0, 40)
    assert not out[:20].any() and list(out[20:30]) == list(range(1, 11))


def test_take_in_pieces_gives_the_same_signal() -> None:
    far = FarEnd()
    far.play(ramp(100), at=0)
    far.play(ramp(100, 101), at=0)
    pieces = np.concatenate([far.take(start, 16) for start in range(0, 224, 16)])
    assert list(pieces[:200]) == list(range(1, 201)) and not pieces[200:].any()


def test_pause_holds_what_was_not_played_and_resume_plays_it_from_there() -> None:
    far = FarEnd()
    far.play(ramp(100), at=0)
    assert list(far.take(0, 40)) == list(range(1, 41))
    far.pause(at=40)
    far.play(ramp(10, 101), at=45)  # a frame sent while paused queues behind the rest
    assert not far.take(40, 60).any()  # nothing plays while paused
    far.resume(at=100)
    out = far.take(100, 80)
    assert list(out[:70]) == list(range(41, 111))
    assert not out[70:].any()


def test_flush_drops_what_was_queued() -> None:
    far = FarEnd()
    far.play(ramp(100), at=0)
    far.take(0, 30)
    far.flush(at=30)
    assert not far.take(30, 100).any()
    far.play(ramp(5), at=130)  # the next reply plays normally
    assert list(far.take(130, 5)) == list(range(1, 6))


def test_flush_while_paused_forgets_the_held_audio() -> None:
    far = FarEnd()
    far.play(ramp(100), at=0)
    far.pause(at=10)
    far.flush(at=20)
    far.resume(at=30)
    assert not far.take(10, 200).any()


def test_a_client_that_sends_no_microphone_cannot_grow_the_far_end() -> None:
    far = FarEnd(max_ahead=1000)
    for _ in range(50):
        far.play(ramp(100), at=0)
    assert far.tail <= 1000
    assert far.dropped == 4000


def test_a_shift_later_moves_what_is_queued_and_what_comes_next() -> None:
    far = FarEnd()
    far.play(ramp(20), at=0)
    assert list(far.take(0, 5)) == [1, 2, 3, 4, 5]
    far.shift(10)  # the client ran dry for 10 samples: the rest plays that much later
    out = far.take(5, 40)
    assert not out[:10].any() and list(out[10:25]) == list(range(6, 21))
    far.play(ramp(5, 100), at=60)  # after a gap: played when it arrives, as before
    assert list(far.take(45, 30)[15:20]) == list(range(100, 105))


def test_a_shift_earlier_drops_the_head_of_the_queue_and_then_of_what_joins_it() -> None:
    far = FarEnd()
    far.play(ramp(20), at=0)
    far.shift(-25)  # the client skipped ahead, past what it had queued
    far.play(ramp(10, 21), at=0)  # joins the queue: its first 5 samples were skipped too
    assert list(far.take(0, 5)) == list(range(26, 31))


# -- the delay tracker ---------------------------------------------------------------------


def _track(far: np.ndarray, near: np.ndarray) -> tuple[DelayTracker, list[int], list[bool]]:
    tracker = DelayTracker()
    jumps, moving = [], []
    for f, n in zip(_blocks(far), _blocks(near), strict=True):
        tracker.add(f, n)
        jumps.append(tracker.jump())
        moving.append(tracker.moving)
    return tracker, jumps, moving


def test_the_tracker_finds_the_echo_moving_later_by_as_much() -> None:
    reply = piper_speech(REPLY)[: 5 * RATE]
    gap = 960  # the client's playback ran dry for 60 ms at 2.5 s
    played = np.concatenate([reply[: 5 * RATE // 2], np.zeros(gap), reply[5 * RATE // 2 :]])
    near = np.zeros(played.size + 2400)
    near[2400:] = played * 0.5  # a -6 dB echo 150 ms late
    far = np.concatenate([reply, np.zeros(near.size - reply.size)])
    tracker, jumps, moving = _track(far.astype(np.int16), near.astype(np.int16))
    # Nothing here moves the far end as the canceller would: the same jump is seen again.
    found = [(i, j) for i, j in enumerate(jumps) if j]
    assert found
    at, jump = found[0]
    assert abs(jump - gap) <= 2  # 8 kHz: within two samples
    # The gap fell in a pause: found within 100 ms of the echo of speech coming back.
    back = next(i for i, b in enumerate(_blocks(near)) if i > 265 and np.abs(b).max() > 1000)
    assert back < at <= back + 10
    assert any(moving[: at + 1]) and tracker.lag is not None and abs(tracker.lag - 2400) <= 2


def test_a_person_talking_over_the_echo_is_not_a_jump() -> None:
    reply = piper_speech(REPLY)[: 5 * RATE]
    near = np.zeros(reply.size)
    near[1600:] = reply[:-1600] * 0.25  # a -12 dB echo
    voice = espeak_speech("I would like to ask about the trains to Boston tomorrow, please.")
    start = 2 * RATE
    near[start : start + voice.size] += voice[: near.size - start]
    tracker, jumps, _ = _track(reply, np.clip(near, -32768, 32767).astype(np.int16))
    assert tracker.lag is not None and not any(jumps)


# -- the convergence guard --------------------------------------------------------------


def _tone(db: float, n: int = 160) -> np.ndarray:
    amplitude = 32768 * 10 ** (db / 20) * np.sqrt(2)
    return (amplitude * np.sin(np.arange(n) * 0.3)).astype(np.int16)


def test_while_converging_a_block_at_the_echo_level_is_attenuated() -> None:
    guard = ConvergenceGuard(converge_s=1.0, margin_db=3.0)
    far, echo = _tone(-20), _tone(-20)  # a 0 dB echo AEC3 has not learned yet
    passed = guard.block(far, echo, echo)
    assert np.abs(passed).max() < np.abs(echo).max() / 20
    assert guard.attenuated == 1


def test_while_converging_a_voice_louder_than_the_echo_goes_through() -> None:
    guard = ConvergenceGuard(converge_s=1.0, margin_db=3.0)
    far, loud = _tone(-20), _tone(-12)
    assert guard.block(far, loud, loud) is loud


def _blocks(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i : i + 160] for i in range(0, pcm.size - 159, 160)]


def test_an_echo_is_found_through_double_talk() -> None:
    """A -12 dB echo 100 ms late, with a person talking over most of it."""
    far = piper_speech(REPLY)[: 3 * RATE]
    echo = np.zeros(far.size)
    echo[1600:] = far[:-1600] * 10 ** (-12 / 20)
    voice = espeak_speech("I would like to ask about the trains to Boston tomorrow, please.")
    echo[RATE // 4 : RATE // 4 + voice.size] += voice[: far.size - RATE // 4]
    near = np.clip(echo, -32768, 32767).astype(np.int16)
    guard = ConvergenceGuard(converge_s=5.0, margin_db=3.0)
    for f, n in zip(_blocks(far), _blocks(near), strict=True):
        guard.block(f, n, n)
    assert guard.path.echoes is True


def test_a_room_without_echo_gets_its_microphone_untouched() -> None:
    """A headset: the microphone hears room noise and a word now and then, never the reply."""
    far = piper_speech(REPLY)[:RATE]
    near = np.random.default_rng(2).normal(0, 30, RATE).astype(np.int16)
    word = espeak_speech("Sorry.")
    near[RATE // 2 : RATE // 2 + word.size] += word[: RATE // 2]
    guard = ConvergenceGuard(converge_s=5.0, margin_db=3.0)
    out = [guard.block(f, n, n // 100) for f, n in zip(_blocks(far), _blocks(near), strict=True)]
    assert guard.path.echoes is False
    last = _blocks(near)[-1]
    assert np.array_equal(out[-1], last) and not np.array_equal(last // 100, last)


def test_nothing_playing_nothing_guarded_and_the_guard_ends() -> None:
    guard = ConvergenceGuard(converge_s=0.05, margin_db=3.0)  # five blocks
    silent, quiet = np.zeros(160, np.int16), _tone(-50)
    assert guard.block(silent, quiet, quiet) is quiet
    for _ in range(5):
        guard.block(_tone(-20), quiet, quiet)
    assert not guard.working
    assert guard.block(_tone(-20), quiet, quiet) is quiet


# -- who gets a canceller ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "transport", "enabled", "expected"),
    [
        ("auto", "websocket", True, True),
        ("auto", "livekit", True, False),
        ("on", "livekit", True, True),
        ("off", "websocket", True, False),
        ("client", "websocket", True, False),
        ("on", "websocket", False, False),
    ],
)
def test_who_cancels_echo(mode: str, transport: str, enabled: bool, expected: bool) -> None:
    assert cancels_echo(mode, transport, EchoConfig(enabled=enabled)) is expected


# -- AEC3 on real speech -----------------------------------------------------------------


def _db(pcm: np.ndarray) -> float:
    samples = pcm.astype(np.float64) / 32768.0
    return float(10 * np.log10(np.mean(samples * samples) + 1e-12))


@pytest.mark.parametrize(("delay_ms", "gain_db"), [(80, -12.0), (150, -6.0), (200, 0.0)])
def test_the_echo_of_the_reply_is_cancelled(delay_ms: int, gain_db: float) -> None:
    reply = piper_speech(REPLY)
    mic, out, canceller = simulate(reply, delay_ms, gain_db)
    settled = slice(RATE, reply.size)  # after the first second
    assert _db(mic[settled]) - _db(out[settled]) > 25
    reduction = canceller.reduction_db()
    assert reduction is not None and reduction > 20
    segmenter = VoiceActivitySegmenter(VadConfig())
    assert segmenter.push(out) == []  # no speech left for the VAD, even at the listening gate
    raw = VoiceActivitySegmenter(VadConfig())
    raw.set_state("speaking")
    assert raw.push(mic) != []  # without the canceller the x2 gate does not stop it


@pytest.mark.parametrize("underruns", [((1.8, 60),), ((1.8, 60), (2.8, 40))])
def test_a_client_whose_playback_ran_dry_does_not_make_the_agent_interrupt_itself(
    underruns: tuple[tuple[float, int], ...],
) -> None:
    """The echo moves later than the server placed the reply; without the delay tracker AEC3
    passes it for a moment, enough for the VAD (the control)."""
    reply = piper_speech(REPLY)
    gate = {"speaking": EchoConfig().speaking_gate_scale}
    heard = {}
    for track in (True, False):
        _, out, canceller = simulate(
            reply, 150, -6.0, config=EchoConfig(track_delay=track), underruns=underruns
        )
        segmenter = VoiceActivitySegmenter(VadConfig(state_scale=gate))
        segmenter.set_state("speaking")
        heard[track] = segmenter.push(out)
        if track:
            assert canceller.tracker is not None and canceller.tracker.jumps == len(underruns)
    assert heard[True] == []
    assert heard[False] != []


def test_the_person_talking_over_the_echo_is_kept() -> None:
    reply = piper_speech(REPLY)
    near = espeak_speech("Wait, stop, I have another question about the trains.")
    _, out, _ = simulate(reply, 150, 0.0, near=near)
    _, alone, _ = simulate(np.zeros_like(reply), 150, 0.0, near=near)
    talk = slice(2 * RATE, 2 * RATE + near.size)
    # Double talk: some of the person's level goes, most of it stays.
    assert _db(out[talk]) > _db(alone[talk]) - 10
    gate = {"speaking": EchoConfig().speaking_gate_scale}  # as AudioIn sets it with a canceller
    segmenter = VoiceActivitySegmenter(VadConfig(state_scale=gate))
    segmenter.set_state("speaking")
    started = [e for e in segmenter.push(out) if type(e).__name__ == "SpeechStarted"]
    assert started and 1.9 <= started[0].at <= 2.4


def test_in_a_room_without_echo_the_utterance_is_transcribed_from_the_raw_microphone() -> None:
    """A headset user talks 0.6 s into a reply: AEC3, still learning, would dull the onset;
    the utterance the recognizer gets is the microphone's own audio, sample for sample."""
    reply48 = soxr.resample(piper_speech(REPLY).astype(np.float32), RATE, 48_000)
    reply48 = reply48.astype(np.int16)
    voice = espeak_speech("I have another question about the trains.")
    mic = np.zeros(4 * RATE, np.int16)
    mic[int(0.6 * RATE) : int(0.6 * RATE) + voice.size] = voice
    audio_in = AudioIn(RATE, VadConfig(), EchoCanceller(EchoConfig()))
    assert audio_in.echo is not None
    ended: list[SpeechEnded] = []
    for index, at in enumerate(range(0, mic.size, 320)):
        audio_in.echo.played(reply48[index * 960 : (index + 1) * 960].tobytes())
        for event in audio_in.push(mic[at : at + 320].tobytes()):
            if isinstance(event, Heard) and isinstance(event.event, SpeechEnded):
                ended.append(event.event)
    assert audio_in.echo.hears_no_echo
    assert len(ended) == 1
    audio = ended[0].audio
    start = int(np.flatnonzero(np.all(_windows(mic, audio.size) == audio, axis=1))[0])
    assert start <= int(0.6 * RATE) <= start + audio.size


def _windows(signal: np.ndarray, size: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(signal, size)[::10]


def test_a_canceller_that_fails_leaves_the_microphone_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicefleet.orchestrator import echo

    def broken(*_: object) -> np.ndarray:
        raise RuntimeError("apm: bad frame")

    monkeypatch.setattr(echo, "_run", broken)
    canceller = EchoCanceller(EchoConfig())
    mic = (np.random.default_rng(3).normal(0, 3000, 3200)).astype(np.int16)
    canceller.process(mic[:320])  # the processor exists from the first audio
    canceller.played((np.ones(960 * 10, np.int16) * 1000).tobytes())
    out = canceller.process(mic[320:])
    assert canceller.failed
    assert np.array_equal(out, mic[320:])
