"""The microphone path's CPU cost per session: what 16 conversations cost the event loop.

Every 20 ms chunk a client sends goes through the orchestrator's event loop: 16 kHz
resampling (here: none, the clients send 16 kHz as bench/load.py's do), the echo canceller
(AEC3, its guard and its bookkeeping) and the gated VAD (`AudioIn.push`). This runs one
session's path in-process, as fast as it goes, on three kinds of 20 s of audio:

- listening: questions (Piper and espeak-ng voices), each followed by the quiet of a reply
  (a quiet room's noise), no reply playing: the microphone path without echo cancellation;
- headset: the same with the replies playing, never heard by the microphone (the room is
  found not to echo: AEC3 skipped);
- speakerphone: the replies' echo (-6 dB, 40 ms later) reaches the microphone (AEC3 runs
  on every 10 ms block while a reply plays and a second after).

Per kind: microseconds per 20 ms chunk (the least of `--rounds`: what the path costs when
nothing else takes the CPU) and the share of one core a session costs (cost / 20 ms). The
last line is one JSON object.

    .venv/bin/python bench/audio_in.py [--rounds 5] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import espeak_speech, piper_speech
from voicefleet.orchestrator.audio_in import AudioIn
from voicefleet.orchestrator.echo import EchoCanceller, EchoConfig
from voicefleet.orchestrator.vad import VadConfig

RATE = 16_000
OUT_RATE = 48_000
CHUNK = RATE // 50  # 20 ms
OUT_CHUNK = OUT_RATE // 50
KINDS = ("listening", "headset", "speakerphone")
ECHO_GAIN = 0.5  # -6 dB
ECHO_DELAY_S = 0.04


def conversation(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(the microphone at 16 kHz, the agent's voice at 48 kHz), turn by turn: a question in
    one of two voices, then a reply while the person is quiet, until `seconds`."""
    questions = [
        piper_speech("Can you book a table for two at seven tomorrow night?"),
        espeak_speech("Set a timer for ten minutes."),
        piper_speech("Yes."),
    ]
    answer = piper_speech("Sure, I can help you with that. It will take a moment.", rate=OUT_RATE)
    gap = np.zeros(int(0.7 * RATE), np.int16)  # the end of the turn
    mic_parts: list[np.ndarray] = []
    far_parts: list[np.ndarray] = []
    while sum(part.size for part in mic_parts) < seconds * RATE:
        question = questions[len(mic_parts) // 4 % len(questions)]
        mic_parts += [question, gap, np.zeros(answer.size // 3, np.int16), gap]
        far_parts += [np.zeros((question.size + gap.size) * 3, np.int16), answer]
        far_parts.append(np.zeros(gap.size * 3, np.int16))
    mic = np.concatenate(mic_parts)[: int(seconds * RATE)]
    far = np.concatenate(far_parts)[: mic.size * 3]
    noise = np.random.default_rng(1).normal(0, 20, mic.size)  # a quiet room, about -64 dBFS
    return np.clip(mic + noise, -32768, 32767).astype(np.int16), far


def run(kind: str, mic: np.ndarray, far: np.ndarray) -> float:
    """Microseconds per 20 ms chunk over the whole input."""
    echo = EchoCanceller(EchoConfig())
    path = AudioIn(RATE, VadConfig(), echo)
    heard = mic
    if kind == "speakerphone":
        delay = int(ECHO_DELAY_S * RATE)
        echoed = far[::3].astype(np.float32) * ECHO_GAIN
        mixed = mic.astype(np.float32)
        mixed[delay:] += echoed[: mixed.size - delay]
        heard = np.clip(mixed, -32768, 32767).astype(np.int16)
    chunks = heard.size // CHUNK
    started = time.perf_counter()
    for i in range(chunks):
        path.push(heard[i * CHUNK : (i + 1) * CHUNK].tobytes())
        if kind != "listening":
            echo.played(far[i * OUT_CHUNK : (i + 1) * OUT_CHUNK].tobytes())
    return (time.perf_counter() - started) / chunks * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    mic, far = conversation(args.seconds)
    figures: dict[str, float] = {}
    print(f"{'kind':<14}{'us per 20 ms chunk':>20}{'% of a core per session':>26}")
    for kind in KINDS:
        us = min(run(kind, mic, far) for _ in range(args.rounds))
        figures[f"{kind}_us_per_chunk"] = round(us, 1)
        print(f"{kind:<14}{us:>20.1f}{us / 20_000 * 100:>26.2f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
