"""ONNX Runtime thread spinning for Piper: first audio with idle threads spinning or sleeping.

Piper (2 intra-op threads, as the worker runs it) with each value of its `spinning` option:
`off` (idle threads sleep), `always` (they spin while a run lasts: ONNX Runtime's
`session.intra_op.allow_spinning` with `session.force_spinning_stop`) and `alone` (the
default: spinning only in a synthesis that starts while no other Piper synthesis runs in the
process), on texts of four shapes, in two situations:
- idle: nothing else runs (the best case for spinning: a woken thread finds work at once);
- loaded: another synthesis runs continuously in a second thread, as when two conversations
  speak at once on one worker (spinning threads then steal the cores the other synthesis
  needs; `alone` then runs without spinning);
- worker: a real `voicefleet worker` per setting, idle between requests, timed at its gRPC
  client from the request to the first frame (STOP after it), as a quiet worker answers a
  reply's first segment: the same texts, the workers taking turns the same way. (In a
  process that waits for work, sleeping threads pay a wake-up at every parallel section:
  spinning matters more there than in a process that has just been busy.)
All settings are loaded at once and measured in turn, call by call (the order reversing each
round), with `--gap` seconds of quiet before each call, as a worker waits between replies:
measured one setting after the other, the second one ran on a machine the first had warmed
and the comparison followed the order. Time to Piper's first chunk, median of `--rounds`.
The worker's default follows from these numbers; see docs/performance.md.

    .venv/bin/python bench/spin.py [--rounds 7] [--json PATH]

The last line is one JSON object: median first-chunk (first-frame, for the workers) ms per
situation and setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peer_tts import WARM_UP, TextCase, VoicefleetWorker
from tests.worker_process import WorkerProcess
from voicefleet.rpc.tts_client import TTSClient
from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import PiperAdapter

TEXTS = [
    "Yes.",
    "Sure, I can help.",
    "What is the weather like",
    "The train to Boston leaves at seven from platform four.",
]
OTHER = "This is another conversation, talking at the same time about something else."


SETTINGS = ("off", "alone", "always")


def adapter(spinning: str) -> PiperAdapter:
    piper = PiperAdapter(
        ModelSpec(id="joe", adapter="piper", options={"threads": 2, "spinning": spinning})
    )
    piper.load()
    piper.warm_up()
    return piper


def first_chunk_ms(piper: PiperAdapter, text: str) -> float:
    began = time.perf_counter()
    for _chunk in piper.synthesize(text, SynthesisOptions()):
        return (time.perf_counter() - began) * 1000
    raise ValueError(f"no audio for {text!r}")


Rows = dict[str, dict[str, float]]  # setting -> text -> median ms


def measure(pipers: dict[str, PiperAdapter], rounds: int, gap_s: float) -> Rows:
    """Median first chunk per setting and text, the settings taking turns call by call."""
    times: dict[tuple[str, str], list[float]] = {}
    for index in range(rounds):
        order = list(pipers.items())
        for text in TEXTS:
            for name, piper in order if index % 2 else order[::-1]:
                time.sleep(gap_s)
                times.setdefault((name, text), []).append(first_chunk_ms(piper, text))
    return {
        name: {text: round(statistics.median(times[(name, text)]), 1) for text in TEXTS}
        for name in pipers
    }


def loaded(pipers: dict[str, PiperAdapter], rounds: int, gap_s: float) -> Rows:
    other = adapter("off")
    stop = threading.Event()

    def keep_busy() -> None:
        while not stop.is_set():
            list(other.synthesize(OTHER, SynthesisOptions()))

    thread = threading.Thread(target=keep_busy, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        return measure(pipers, rounds, gap_s)
    finally:
        stop.set()
        thread.join()


async def _in_workers(addresses: dict[str, str], rounds: int, gap_s: float) -> Rows:
    times: dict[tuple[str, str], list[float]] = {}
    clients = {name: TTSClient(address) for name, address in addresses.items()}
    # The worker as bench/peers.py times it: request to first frame at the client, then STOP.
    workers = {name: VoicefleetWorker(client) for name, client in clients.items()}
    try:
        for worker in workers.values():  # the first call pays lazy initialisation
            await worker.speak(WARM_UP)
        for index in range(rounds):
            order = list(workers.items())
            for text in TEXTS:
                for name, worker in order if index % 2 else order[::-1]:
                    await asyncio.sleep(gap_s)
                    reply = await worker.speak(TextCase("spin", text))
                    times.setdefault((name, text), []).append(reply.first_ms)
    finally:
        for client in clients.values():
            await client.close()
    return {
        name: {text: round(statistics.median(times[(name, text)]), 1) for text in TEXTS}
        for name in addresses
    }


def in_workers(rounds: int, gap_s: float) -> Rows:
    """Client-side first frame of one idle worker per setting, the workers taking turns."""
    with tempfile.TemporaryDirectory(prefix="spin-") as tmp:
        workers = {
            name: WorkerProcess(
                Path(tmp),
                {
                    "models": [
                        {
                            "id": "joe",
                            "adapter": "piper",
                            "options": {"threads": 2, "spinning": name},
                        }
                    ],
                    "default_model": "joe",
                    "registry": {"redis_url": None},
                },
            )
            for name in SETTINGS
        }
        try:
            for worker in workers.values():
                worker.start()
            addresses = {name: worker.address for name, worker in workers.items()}
            return asyncio.run(_in_workers(addresses, rounds, max(gap_s, 0.5)))
        finally:
            for worker in workers.values():
                worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--gap", type=float, default=0.3, help="quiet seconds before each call")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    pipers = {name: adapter(name) for name in SETTINGS}
    results: dict[str, dict[str, float]] = {}
    for situation, run in (("idle", measure), ("loaded", loaded)):
        for name, row in run(pipers, args.rounds, args.gap).items():
            results[f"{situation}, {name}"] = row
    del pipers
    for name, row in in_workers(args.rounds, args.gap).items():
        results[f"worker, {name}"] = row
    print(f"{'':<20}" + "".join(f"{text[:22]:>26}" for text in TEXTS))
    for key, row in results.items():
        print(f"{key:<20}" + "".join(f"{row[text]:>26}" for text in TEXTS))
    summary = {key: statistics.median(row.values()) for key, row in results.items()}
    if args.json:
        args.json.write_text(json.dumps({"texts": TEXTS, "results": results}, indent=1))
    print(json.dumps({"first_chunk_ms_median": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
