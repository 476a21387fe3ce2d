"""Echo benchmark: does the agent interrupt itself on a speakerphone, and does a person talking
over it still stop it?

Offline and deterministic (no network, no clock): `tests.speakerphone.simulate` sends each
reply as the orchestrator does (48 kHz frames, 120 ms ahead of playback) into the session's
EchoCanceller, with the microphone hearing the reply's echo after each delay at each level
over room noise. The canceller's output goes through the session's VAD (the gate while
speaking, as with the canceller on) and the barge-in detector, as in a session.

- self-interruptions: replies during which the detector raised a barge-in candidate (what
  would send `audio_pause`), per setting: no canceller (the x2 gate alone), AEC3 alone, AEC3
  with the convergence guard, and with the delay tracker as well (the default); with steady
  playback and with a client whose playback ran dry mid-reply;
- double talk: a person (espeak-ng, as loud as the echo, or 6 dB quieter) starts talking 2 s
  into a 0 dB echo; time from their onset to the detector's `real` (the reply is dropped);
- cost: microseconds of canceller per 10 ms block (one core).

Replies: three texts (a long sentence, an opener with a pause, numbers) in two voices (Piper,
espeak-ng); delays 0/80/150/200/300 ms; echo -12/-6/0 dB. Last line: one JSON object.

    .venv/bin/python bench/echo.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speakerphone import simulate
from tests.speech import espeak_speech, piper_speech, trim
from voicefleet.orchestrator.barge_in import BargeInDetector, Signal
from voicefleet.orchestrator.config import PipelineConfig
from voicefleet.orchestrator.echo import EchoConfig
from voicefleet.orchestrator.vad import VadConfig, VoiceActivitySegmenter

RATE = 16_000
REPLIES = [
    "Here is what I found about the weather in Paris today: it will be sunny with a light "
    "breeze, and the temperature will reach twenty degrees in the afternoon.",
    "Sure. I can help you with that, just give me a moment to look it up. It should not take "
    "long at all.",
    "Okay! The train to Boston leaves at seven fifteen from platform nine, and it arrives at noon.",
]
INTERRUPTIONS = [
    "Sorry but I have another question about the trains to Boston.",
    "Wait, stop, I have another question about the trains.",
]
DELAYS_MS = (0, 80, 150, 200, 300)
ECHO_DB = (-12.0, -6.0, 0.0)


def detections(audio: np.ndarray, speaking_scale: float) -> list[tuple[str, float]]:
    """(signal, stream time) of every barge-in candidate and real, as a session sees them."""
    pipeline = PipelineConfig()
    segmenter = VoiceActivitySegmenter(VadConfig(state_scale={"speaking": speaking_scale}))
    segmenter.set_state("speaking")
    detector = BargeInDetector(
        pipeline.vad.start_ms, pipeline.barge_in_min_speech_ms, pipeline.barge_in_false_alarm_ms
    )
    found = []
    for voiced, at, _ in segmenter.push_frames(audio):
        signal = detector.frame(at, voiced, armed=True)
        if signal in (Signal.CANDIDATE, Signal.REAL):
            found.append((signal.value, at))
    return found


# The client's playback ran dry at these moments, unknown to the server: (second of the
# reply, ms). Underruns of 40-100 ms are what a
# loaded 2-core machine shows in the echo tests (tests/speakerphone.py counts them).
UNDERRUNS: dict[str, tuple[tuple[float, int], ...]] = {
    "steady": (),
    "two_underruns": ((1.8, 60), (2.8, 40)),
    "four_underruns": ((0.8, 40), (1.8, 100), (2.8, 40), (3.5, 80)),
}


def settings() -> dict[str, tuple[EchoConfig | None, float]]:
    """Name -> (canceller config or None for none, gate while speaking)."""
    default = EchoConfig()
    return {
        "no_canceller": (None, VadConfig().state_scale["speaking"]),
        "aec3_only": (EchoConfig(converge_s=0, track_delay=False), default.speaking_gate_scale),
        "aec3_guard": (EchoConfig(track_delay=False), default.speaking_gate_scale),
        "aec3_guard_tracking": (default, default.speaking_gate_scale),
    }


def self_interruptions(
    replies: list[tuple[str, str, np.ndarray]], underruns: tuple[tuple[float, int], ...]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (config, scale) in settings().items():
        if config is None and underruns:
            continue  # no canceller, no alignment to lose
        bad: list[str] = []
        total = 0
        for voice, text, reply in replies:
            for delay in DELAYS_MS:
                for gain in ECHO_DB:
                    total += 1
                    mic, out, _ = simulate(
                        reply, delay, gain, config=config or EchoConfig(), underruns=underruns
                    )
                    heard = mic if config is None else out
                    if any(kind == "candidate" for kind, _ in detections(heard, scale)):
                        bad.append(f"{voice} {text[:12]!r} {delay} ms {gain:+.0f} dB")
        results[name] = {"replies": total, "self_interrupted": len(bad), "cases": bad}
    return results


def double_talk(replies: list[tuple[str, str, np.ndarray]]) -> dict[str, Any]:
    latencies: list[float] = []
    missed = 0
    for sentence in INTERRUPTIONS:
        voice = trim(espeak_speech(sentence)).astype(np.float64)
        for _, _, reply in replies:
            echo_rms = float(np.sqrt(np.mean(reply.astype(np.float64) ** 2)))
            for level_db in (0.0, -6.0):
                scaled = voice * echo_rms * 10 ** (level_db / 20) / np.sqrt(np.mean(voice**2))
                near = np.clip(scaled, -32768, 32767).astype(np.int16)
                for delay in (80, 200):
                    _, out, _ = simulate(reply, delay, 0.0, near=near, near_at_s=2.0)
                    real = [at for kind, at in detections(out, 1.4) if kind == "real" and at >= 2]
                    if real:
                        latencies.append((real[0] - 2.0) * 1000)
                    else:
                        missed += 1
    values = np.array(latencies)
    return {
        "cases": len(latencies) + missed,
        "missed": missed,
        "onset_to_real_ms_p50": round(float(np.percentile(values, 50)), 1),
        "onset_to_real_ms_p90": round(float(np.percentile(values, 90)), 1),
        "within_700_ms": round(float(np.mean(values <= 700)), 3),
    }


def cost_us_per_block(reply: np.ndarray) -> float:
    began = time.perf_counter()
    _, out, _ = simulate(reply, 150, 0.0)
    return round((time.perf_counter() - began) / (out.size / 160) * 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    replies = [
        (name, text, say(text))
        for text in REPLIES
        for name, say in (("piper", piper_speech), ("espeak", espeak_speech))
    ]
    interruptions = {}
    for playback, underruns in UNDERRUNS.items():
        interruptions[playback] = self_interruptions(replies, underruns)
        for name, result in interruptions[playback].items():
            count = f"{result['self_interrupted']}/{result['replies']}"
            print(f"{playback:<15} {name:<20} self-interrupted {count}")
            for case in result["cases"][: 5 if underruns else None]:
                print(f"    {case}")
    talk = double_talk(replies)
    print(f"double talk: {talk}")
    cost = cost_us_per_block(replies[0][2])
    print(f"canceller: {cost} us per 10 ms block (one core)")
    final = {
        "self_interrupted": {
            playback: {k: v["self_interrupted"] for k, v in results.items()}
            for playback, results in interruptions.items()
        },
        "replies": {playback: r["aec3_guard"]["replies"] for playback, r in interruptions.items()},
        "double_talk": talk,
        "cost_us_per_10ms_block": cost,
    }
    print(json.dumps(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())
