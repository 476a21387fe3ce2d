"""ASR under concurrency: how the ASR service's settings serve many sessions at once.

N sessions finish an utterance at the same moment (simultaneous) or spread over 2 s (staggered);
each waits for its final transcript through `ASRService` exactly as the orchestrator asks for it.
Compared settings (`asr.workers` x `asr.cpu_threads`, `asr.max_batch`):
- one lane, 2 threads, no batching (one utterance at a time: the old behaviour);
- one lane, 2 threads, batches of up to 4 / 8 (one encoder call, one decoding call per batch);
- two replicas with 1 thread each, with and without batching.
Reported per setting and N: latency from request to text (p50 / p95 / max: queueing included),
the mean queueing delay, and the words right (WER over all clips). The clips are the bench's
spoken questions in the Piper voice and espeak-ng.

    .venv/bin/python bench/asr_load.py [--sessions 1,2,4,8,16] [--quick] [--json PATH]

The last line is one JSON object: per setting, the p95 latency at the largest N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import espeak_speech, piper_speech, to_float, trim
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.service import ASRService
from voicefleet.asr.wer import word_error_rate

TEXTS = [
    "What is the weather like in Paris today?",
    "Please book a table for two at seven.",
    "How far is the train station from here?",
    "Turn off the lights in the kitchen.",
    "Can you play some jazz?",
    "Remind me to call my sister at noon.",
    "What time does the museum open tomorrow?",
    "Set a timer for ten minutes.",
]
SETTINGS = {
    "1x2 batch 1": {"workers": 1, "cpu_threads": 2, "max_batch": 1},
    "1x2 batch 4": {"workers": 1, "cpu_threads": 2, "max_batch": 4},
    "1x2 batch 8": {"workers": 1, "cpu_threads": 2, "max_batch": 8},
    "2x1 batch 1": {"workers": 2, "cpu_threads": 1, "max_batch": 1},
    "2x1 batch 4": {"workers": 2, "cpu_threads": 1, "max_batch": 4},
}


def clips() -> list[tuple[str, np.ndarray]]:
    out = []
    for say in (piper_speech, espeak_speech):
        for text in TEXTS:
            out.append((text, to_float(trim(say(text)))))
    return out


async def one_round(
    service: ASRService, corpus: list[tuple[str, np.ndarray]], n: int, spread_s: float, seed: int
) -> list[tuple[float, float, str, str]]:
    rng = np.random.default_rng(seed)
    picks = [corpus[i % len(corpus)] for i in rng.permutation(max(n, len(corpus)))[:n]]
    offsets = sorted(rng.uniform(0, spread_s, n)) if spread_s else [0.0] * n

    async def session(offset: float, text: str, audio: np.ndarray) -> tuple[float, float, str, str]:
        await asyncio.sleep(offset)
        began = time.perf_counter()
        transcript = await service.transcribe(audio)
        return (time.perf_counter() - began) * 1000, transcript.queued_ms, text, transcript.text

    return await asyncio.gather(
        *(session(o, t, a) for o, (t, a) in zip(offsets, picks, strict=True))
    )


async def run_setting(
    settings: dict[str, int], corpus: list[tuple[str, np.ndarray]], sizes: list[int], rounds: int
) -> dict[str, dict[str, float]]:
    service = ASRService(ASRConfig(**settings))  # type: ignore[arg-type]
    await service.start()
    results: dict[str, dict[str, float]] = {}
    try:
        for mode, spread in (("simultaneous", 0.0), ("staggered", 2.0)):
            for n in sizes:
                rows = []
                for r in range(rounds):
                    rows += await one_round(service, corpus, n, spread, seed=r)
                    await asyncio.sleep(0.2)
                latency = [row[0] for row in rows]
                wer = word_error_rate(" ".join(r[2] for r in rows), " ".join(r[3] for r in rows))
                results[f"{mode} {n}"] = {
                    "p50_ms": round(float(np.percentile(latency, 50)), 1),
                    "p95_ms": round(float(np.percentile(latency, 95)), 1),
                    "max_ms": round(max(latency), 1),
                    "queued_ms_mean": round(float(np.mean([row[1] for row in rows])), 1),
                    "wer": round(wer, 3),
                }
    finally:
        service.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,2,4,8,16")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, N up to 8")
    parser.add_argument("--json", type=Path, help="also write every setting's table here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sessions.split(",")]
    rounds = args.rounds
    if args.quick:
        sizes, rounds = [n for n in sizes if n <= 8], 1
    corpus = clips()
    summary: dict[str, float] = {}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for name in args.settings.split(","):
        results = tables[name] = asyncio.run(run_setting(SETTINGS[name], corpus, sizes, rounds))
        print(f"\n{name}")
        print(f"{'':<18}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'queued':>10}{'WER':>8}")
        for key, row in results.items():
            print(
                f"{key:<18}{row['p50_ms']:>10}{row['p95_ms']:>10}{row['max_ms']:>10}"
                f"{row['queued_ms_mean']:>10}{row['wer']:>8}",
                flush=True,
            )
        summary[name] = results[f"simultaneous {sizes[-1]}"]["p95_ms"]
    if args.json:
        settings = {name: SETTINGS[name] for name in tables}
        args.json.write_text(json.dumps({"settings": settings, "tables": tables}, indent=1))
    print(json.dumps({"sessions": sizes[-1], "p95_ms_simultaneous": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
