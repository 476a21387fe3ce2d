"""The OpenAI-compatible API as its users meet it: the official `openai` client against a real
orchestrator and one Piper worker (valkey, tiny.en), on this machine.

Speech: for each text shape of bench/peer_tts.py (not the token streams: this API takes whole
texts), `audio.speech.with_streaming_response.create` in `pcm` and `mp3`, timed from the call to
the first audio bytes (TTFB) and to the last; the audio's length. Transcription: a Piper-spoken
wav of ~4 s, `json` and `verbose_json` with word timings, timed end to end.
Rounds are interleaved; medians are printed, then one JSON line.

    .venv/bin/python bench/openai_api.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openai

from bench.output import print_result
from bench.peer_tts import CASES
from bench.stack import running_stack
from tests.integration.conftest import PIPER
from tests.speech import piper_speech, write_wav

SPOKEN = "Could you tell me when the museum opens on Saturday and whether I need a ticket?"


async def speech_ms(api: openai.AsyncOpenAI, text: str, fmt: str) -> tuple[float, float, int]:
    """(first byte ms, last byte ms, bytes) of one streamed speech request."""
    began = time.perf_counter()
    first = None
    size = 0
    async with api.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="joe",
        input=text,
        response_format=fmt,  # type: ignore[arg-type]
    ) as response:
        async for chunk in response.iter_bytes():
            if first is None and chunk:
                first = (time.perf_counter() - began) * 1000
            size += len(chunk)
    last = (time.perf_counter() - began) * 1000
    return first or last, last, size


async def transcription_ms(api: openai.AsyncOpenAI, wav: bytes, verbose: bool) -> float:
    began = time.perf_counter()
    if verbose:
        await api.audio.transcriptions.create(
            model="whisper-1",
            file=("q.wav", wav),
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    else:
        await api.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav))
    return (time.perf_counter() - began) * 1000


async def measure(url: str, rounds: int) -> dict[str, float | int]:
    api = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=120)
    cases = [case for case in CASES if not case.streamed]
    await speech_ms(api, "Warming up.", "pcm")
    firsts: dict[str, list[float]] = {}
    lasts: dict[str, list[float]] = {}
    for _ in range(rounds):
        for case in cases:
            for fmt in ("pcm", "mp3"):
                first, last, _size = await speech_ms(api, case.text, fmt)
                firsts.setdefault(f"{fmt}.{case.name}", []).append(first)
                lasts.setdefault(f"{fmt}.{case.name}", []).append(last)
    with tempfile.TemporaryDirectory() as tmp:
        write_wav(Path(tmp) / "q.wav", piper_speech(SPOKEN), 16_000)
        wav = (Path(tmp) / "q.wav").read_bytes()
    plain = [await transcription_ms(api, wav, False) for _ in range(rounds)]
    verbose = [await transcription_ms(api, wav, True) for _ in range(rounds)]
    result: dict[str, float | int] = {}
    for key in firsts:
        result[f"ttfb_ms.{key}"] = round(statistics.median(firsts[key]), 1)
        result[f"last_byte_ms.{key}"] = round(statistics.median(lasts[key]), 1)
    for fmt in ("pcm", "mp3"):
        medians = [v for k, v in result.items() if k.startswith(f"ttfb_ms.{fmt}.")]
        result[f"ttfb_ms.{fmt}.median_of_texts"] = round(statistics.median(medians), 1)
    result["transcription_ms.json_4s"] = round(statistics.median(plain), 1)
    result["transcription_ms.verbose_words_4s"] = round(statistics.median(verbose), 1)
    result["rounds"] = rounds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_stack() as (stack, _pid):
        stack.worker(models=[{**PIPER, "voices": {"joe": ""}, "options": {"threads": 2}}])
        orchestrator = stack.orchestrator()
        print_result(asyncio.run(measure(orchestrator.url, args.rounds)))


if __name__ == "__main__":
    main()
