"""Engine benchmark: first-frame latency and real-time factor, Piper vs hibari, per text shape.

For each engine, its shipped worker config's default model (configs/worker.yaml: Piper with 2
threads; configs/worker-hibari.yaml: hibari with 1 thread) runs in
- a real `voicefleet worker` subprocess over loopback gRPC: time from sending the text to its
  first 20 ms frame (the worker cuts the first few words early, so this is their synthesis plus
  loudness, resampling and framing);
- this process, the same adapter as the worker loads it: real-time factor (compute time over
  audio duration) of each whole text.
Engines run one after the other, each alone on the machine. Prints a table and, as its last
line, one JSON object.

    .venv/bin/python bench/engines.py [--rounds 5] [--engines piper hibari]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.output import print_result
from tests.worker_process import WorkerProcess
from voicefleet.rpc.tts_client import STOP, TTSClient
from voicefleet.tts.adapters import ModelSpec, create_adapter
from voicefleet.tts.adapters.base import SynthesisOptions

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "piper": REPO / "configs" / "worker.yaml",
    "hibari": REPO / "configs" / "worker-hibari.yaml",
}
TEXTS = {
    "word": "Yes.",
    "question": "Could you tell me when the next train to the city leaves?",
    "long_sentence": (
        "The quick brown fox jumps over the lazy dog near the river bank while the farmer, "
        "who had been watching all morning, finally put down his coffee and laughed."
    ),
    "three_sentences": (
        "Good morning, and welcome back. Today we talk about trains. "
        "They are faster than you think."
    ),
    "numbers": "On the 3rd of March 2024, 1,250 people paid $9.99 each at 7:30 pm.",
}


def default_model(engine: str) -> dict[str, Any]:
    """The default model of the engine's shipped worker config."""
    config = yaml.safe_load(CONFIGS[engine].read_text())
    return next(m for m in config["models"] if m["id"] == config["default_model"])


def rtf(spec: ModelSpec, rounds: int) -> dict[str, float]:
    """Compute time over audio duration per text, in this process (median of rounds)."""
    adapter = create_adapter(spec)
    adapter.load()
    adapter.warm_up()
    out = {}
    for shape, text in TEXTS.items():
        ratios = []
        for _ in range(rounds):
            began = time.perf_counter()
            samples = sum(c.size for c in adapter.synthesize(text, SynthesisOptions()))
            ratios.append((time.perf_counter() - began) / (samples / adapter.sample_rate))
        out[shape] = statistics.median(ratios)
    adapter.unload()
    return out


async def first_frames(address: str, engine: str, rounds: int) -> dict[str, float]:
    """Text sent -> first frame over gRPC, per text (median of rounds)."""
    out = {}
    async with TTSClient(address) as client:
        for shape, text in TEXTS.items():
            elapsed = []
            for round_index in range(rounds):
                sid = f"{engine}-{shape}-{round_index}"
                await client.start_session(sid)
                began = time.perf_counter()
                call = client.synthesize(sid, [text])
                await anext(aiter(call))
                elapsed.append((time.perf_counter() - began) * 1000)
                await client.control(sid, STOP)
                call.cancel()
                await client.end_session(sid)
                await asyncio.sleep(0.3)  # let the stopped segment finish on the worker
            out[shape] = statistics.median(elapsed)
    return out


def measure(engine: str, rounds: int) -> dict[str, float]:
    model = default_model(engine)
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(
            Path(tmp),
            {"models": [model], "default_model": model["id"], "registry": {"redis_url": None}},
        ).start()
        try:
            first = asyncio.run(first_frames(worker.address, engine, rounds))
        finally:
            worker.stop()
    ratios = rtf(ModelSpec(**model), rounds)
    result = {f"{engine}_first_frame_ms_{shape}": round(ms, 1) for shape, ms in first.items()}
    result.update({f"{engine}_rtf_{shape}": round(r, 4) for shape, r in ratios.items()})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each text (median)")
    parser.add_argument("--engines", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    result: dict[str, float] = {}
    for engine in args.engines:
        result.update(measure(engine, args.rounds))
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
