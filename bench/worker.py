"""Worker benchmark: first-frame latency over gRPC vs raw Piper, PAUSE latency, RTF.

Runs, in one process and one run on the same texts:
- raw Piper in-process (the bundled voice, same thread count as the worker): time to its first
  chunk (Piper yields one chunk per sentence: its first sentence), and time to synthesize the
  same first segment the worker cuts (these texts: the first clause), and RTF;
- a real `voicefleet worker` subprocess over loopback gRPC: time from sending the text to the
  first 20 ms frame, and PAUSE latency (PAUSE sent -> last frame that still arrives, 0 if none)
  at steady state.
Prints a table and, as its last line, one JSON object.

    .venv/bin/python bench/worker.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.output import print_result
from tests.worker_process import WorkerProcess
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE, RESUME, STOP, TTSClient
from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import PiperAdapter
from voicefleet.tts.segmenter import TextSegmenter

THREADS = 2
TEXTS = [
    "Hello there, how are you doing today? I hope the weather is nice where you are.",
    "Sure, I can help you with that request. Let me look up the details for you.",
    "Well, that depends on a few things. Tell me more about what you need.",
    "Good morning, and welcome back to the show. Today we talk about trains.",
    "Okay, here is what I heard from you. You would like a table for two at seven.",
]


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class RawPiper:
    """The bundled voice in this process, as the worker loads it: the baseline."""

    def __init__(self) -> None:
        self.adapter = PiperAdapter(
            ModelSpec(id="joe", adapter="piper", options={"threads": THREADS})
        )
        self.adapter.load()
        self.adapter.warm_up()
        self.compute_s = 0.0
        self.audio_s = 0.0

    def first_chunk_ms(self, text: str) -> float:
        """Piper's own streaming unit is the sentence: time to its first chunk."""
        began = time.perf_counter()
        for _chunk in self.adapter.synthesize(text, SynthesisOptions()):
            return (time.perf_counter() - began) * 1000
        raise ValueError(f"no audio for {text!r}")

    def first_segment_ms(self, text: str) -> float:
        """Time to synthesize the first segment the worker cuts from the same text."""
        segmenter = TextSegmenter()
        segment = (segmenter.push(text) + segmenter.flush())[0].text
        began = time.perf_counter()
        list(self.adapter.synthesize(segment, SynthesisOptions()))
        return (time.perf_counter() - began) * 1000

    def measure_rtf(self, text: str) -> None:
        began = time.perf_counter()
        samples = sum(c.size for c in self.adapter.synthesize(text, SynthesisOptions()))
        self.compute_s += time.perf_counter() - began
        self.audio_s += samples / self.adapter.sample_rate


async def worker_first_frame_ms(client: TTSClient, sid: str, text: str) -> float:
    await client.start_session(sid)
    began = time.perf_counter()
    call = client.synthesize(sid, [text])
    await anext(aiter(call))
    elapsed = (time.perf_counter() - began) * 1000
    await client.control(sid, STOP)
    call.cancel()
    await client.end_session(sid)
    await asyncio.sleep(0.3)  # let the stopped segment finish on the worker
    return elapsed


async def first_audio(client: TTSClient, raw: RawPiper, rounds: int) -> dict[str, list[float]]:
    """Interleaved per text, so raw and worker see the same machine state."""
    out: dict[str, list[float]] = {"first": [], "raw_chunk": [], "raw_segment": []}
    for round_index in range(rounds):
        for text_index, text in enumerate(TEXTS):
            out["raw_chunk"].append(raw.first_chunk_ms(text))
            out["raw_segment"].append(raw.first_segment_ms(text))
            raw.measure_rtf(text)
            sid = f"bench-{round_index}-{text_index}"
            out["first"].append(await worker_first_frame_ms(client, sid, text))
    return out


async def pause_latencies(client: TTSClient, pauses: int) -> tuple[list[float], list[float]]:
    """PAUSE sent -> last frame arriving after it (0 if none), at steady state."""
    sid = "bench-pause"
    await client.start_session(sid)
    arrivals: list[float] = []

    async def consume() -> None:
        async for _frame in client.synthesize(sid, [" ".join(TEXTS * 3)]):
            arrivals.append(time.perf_counter())

    reader = asyncio.create_task(consume())
    await asyncio.sleep(1.0)  # past the initial lead burst
    latencies, acks = [], []
    rng = np.random.default_rng(7)
    for _ in range(pauses):
        await asyncio.sleep(float(rng.uniform(0.1, 0.3)))
        sent = time.perf_counter()
        await client.control(sid, PAUSE)
        acks.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(0.15)
        late = [t for t in arrivals[-20:] if t >= sent]
        latencies.append((max(late) - sent) * 1000 if late else 0.0)
        await client.control(sid, RESUME)
    await client.control(sid, STOP)
    await reader
    await client.end_session(sid)
    return latencies, acks


async def measure_worker(address: str, rounds: int, pauses: int) -> dict[str, list[float]]:
    raw = RawPiper()
    async with TTSClient(address) as client:
        measured = await first_audio(client, raw, rounds)
        measured["pause"], measured["acks"] = await pause_latencies(client, pauses)
        caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest())
    measured["rtf"] = [raw.compute_s / raw.audio_s]
    measured["worker_rtf"] = [caps.load.rtf]
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the texts")
    parser.add_argument("--pauses", type=int, default=40, help="PAUSE/RESUME cycles")
    parser.add_argument("--verbose", action="store_true", help="print the worker's timing log")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(
            Path(tmp),
            {
                "models": [{"id": "joe", "adapter": "piper", "options": {"threads": THREADS}}],
                "default_model": "joe",
                "registry": {"redis_url": None},
                "log_level": "DEBUG" if args.verbose else "INFO",
            },
        ).start()
        try:
            measured = asyncio.run(measure_worker(worker.address, args.rounds, args.pauses))
        finally:
            worker.stop()
            if args.verbose:
                print(worker.log())

    first, pause = measured["first"], measured["pause"]
    raw_chunk, raw_segment = measured["raw_chunk"], measured["raw_segment"]
    result = {
        "first_frame_ms_p50": round(statistics.median(first), 1),
        "first_frame_ms_p95": round(p(first, 95), 1),
        "raw_piper_first_chunk_ms_p50": round(statistics.median(raw_chunk), 1),
        "raw_piper_first_segment_ms_p50": round(statistics.median(raw_segment), 1),
        "ratio_p50": round(statistics.median(first) / statistics.median(raw_chunk), 3),
        "segment_ratio_p50": round(statistics.median(first) / statistics.median(raw_segment), 3),
        "pause_ms_p50": round(statistics.median(pause), 2),
        "pause_ms_p99": round(p(pause, 99), 2),
        "pause_ack_ms_p50": round(statistics.median(measured["acks"]), 2),
        "rtf": round(measured["rtf"][0], 3),
        "worker_rtf": round(measured["worker_rtf"][0], 3),
        "samples": len(first),
    }
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
