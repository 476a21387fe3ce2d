"""Residency benchmark: what a session pays when its voice's model must be loaded first.

One real `voicefleet worker` subprocess whose catalog holds both engines' shipped models
(Piper en_US-joe-medium as its default, always resident; hibari-heart) with the default
residency policy. For each model, each round: StartSession naming it and the first 20 ms frame
of a short reply, timed from StartSession, either
- warm: the model is resident (a session just used it), or
- cold: the model was unloaded just before (UnloadModel), so StartSession loads and warms it up.
Piper, the default model, is pinned; its cold rounds use a second catalog entry of the same
voice that is not pinned. This is the number behind the router preferring a worker that has
the model resident. Prints a table and, as its last line, one JSON object.

    .venv/bin/python bench/residency.py [--rounds 5]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engines import default_model
from bench.output import print_result
from tests.worker_process import WorkerProcess
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import STOP, TTSClient

TEXT = "Sure, I can help with that."


async def first_frame_ms(client: TTSClient, sid: str, model: str) -> float:
    """StartSession(model) -> the reply's first frame, in ms."""
    began = time.perf_counter()
    await client.start_session(sid, model)
    call = client.synthesize(sid, [TEXT])
    await anext(aiter(call))
    elapsed = (time.perf_counter() - began) * 1000
    await client.control(sid, STOP)
    call.cancel()
    await client.end_session(sid)
    await asyncio.sleep(0.3)  # the stopped segment finishes and the model is released
    return elapsed


async def run(address: str, models: list[str], rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with TTSClient(address) as client:
        for model in models:
            for state in ("cold", "warm"):
                times = []
                for index in range(rounds):
                    if state == "cold":
                        await client.stub.UnloadModel(tts_pb2.UnloadModelRequest(model_id=model))
                    else:
                        await first_frame_ms(client, f"prime-{model}-{index}", model)
                    times.append(await first_frame_ms(client, f"{model}-{state}-{index}", model))
                out[f"{model}_{state}_first_frame_ms"] = round(statistics.median(times), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (median)")
    args = parser.parse_args()
    piper, hibari = default_model("piper"), default_model("hibari")
    unpinned_piper = {**piper, "id": "joe-unpinned", "voices": {}}
    models: list[dict[str, Any]] = [piper, unpinned_piper, hibari]
    with tempfile.TemporaryDirectory() as tmp:
        worker = WorkerProcess(
            Path(tmp),
            {"models": models, "default_model": piper["id"], "registry": {"redis_url": None}},
        ).start()
        try:
            result = asyncio.run(run(worker.address, ["joe-unpinned", hibari["id"]], args.rounds))
        finally:
            worker.stop()
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
