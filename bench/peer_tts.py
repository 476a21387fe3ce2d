"""TTS side of bench/peers.py: time to first audio and RTF of the voicefleet worker (gRPC), raw
Piper in-process and wyoming-piper (Wyoming over TCP), on the same texts, interleaved.

First audio is the time from sending the text (its first piece, for a token stream) to the first
audio bytes. Token streams go to the worker as TextChunks as they come and to wyoming-piper as
SynthesizeChunk events (when it announces streaming; else the whole text once complete). Raw
Piper cannot stream text: it synthesizes once the whole text has arrived, so its first audio on
a token stream includes the delivery time.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench.peer_servers import PeerError, PeerServer
from tests.worker_process import free_port
from voicefleet.rpc.tts_client import STOP, TTSClient
from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import PiperAdapter, bundled_voice_path


@dataclass(frozen=True)
class TextCase:
    """One text to speak; `streamed` delivers it like an LLM, a few characters at a time."""

    name: str
    text: str
    streamed: bool = False


_PARAGRAPH = (
    "Thanks for waiting. I found three flights that match what you asked for. The first one "
    "leaves at eight in the morning and arrives just after noon. The other two are in the "
    "evening, and they are a little cheaper."
)
_EARLY_COMMA = "Well, that depends on a few things that we should talk about first."
_NO_EARLY_COMMA = "The train to Boston leaves from platform four at half past nine tonight."
_LONG_FIRST = (
    "I looked through all of the options you mentioned earlier and the one that fits both your "
    "budget and your schedule best is the evening flight on Thursday. Shall I book it?"
)
CASES = (
    TextCase("one_word", "Hello."),
    TextCase("short_reply", "That sounds great."),
    TextCase("no_early_comma", _NO_EARLY_COMMA),
    TextCase("long_first_sentence", _LONG_FIRST),
    TextCase("numbers", "Your order number is 48213 and the total comes to $129.50 with tax."),
    TextCase("question", "Would you like me to book the table for seven or would eight be better?"),
    TextCase("paragraph", _PARAGRAPH),
    TextCase("early_comma", _EARLY_COMMA),
    TextCase("stream_paragraph", _PARAGRAPH, streamed=True),
    TextCase("stream_early_comma", _EARLY_COMMA, streamed=True),
    TextCase("stream_no_early_comma", _NO_EARLY_COMMA, streamed=True),
    TextCase("stream_long_first_sentence", _LONG_FIRST, streamed=True),
)
QUICK_CASES = ("one_word", "no_early_comma", "early_comma", "question", "stream_paragraph")

# An LLM's tokens: ~4 characters each, 50 a second.
TOKEN_SIZES = (3, 5, 2, 6, 4)
TOKEN_DELAY_S = 0.02
REQUEST_TIMEOUT_S = 120.0
# Quiet after every measurement, whichever system made it, so that none shares the CPU with
# the tail of the one before: after STOP the worker finishes the segment it is synthesizing,
# and ONNX Runtime's threads in wyoming-piper spin on for tens of milliseconds after a run.
# (With a settle after one system only, the systems' fixed cyclic order had voicefleet always
# measured right after wyoming-piper, inside that tail.)
SETTLE_S = 0.5
WARM_UP = TextCase("warm_up", "Warming up.")


def tokens(text: str) -> list[str]:
    """The text cut into token-sized pieces (deterministic)."""
    pieces, start, index = [], 0, 0
    while start < len(text):
        size = TOKEN_SIZES[index % len(TOKEN_SIZES)]
        pieces.append(text[start : start + size])
        start, index = start + size, index + 1
    return pieces


async def deliver(text: str) -> AsyncIterator[str]:
    """The text's tokens, TOKEN_DELAY_S apart."""
    for index, piece in enumerate(tokens(text)):
        if index:
            await asyncio.sleep(TOKEN_DELAY_S)
        yield piece


@dataclass(frozen=True)
class Reply:
    """One measurement: first audio, and (when the whole reply was taken) its length and cost."""

    first_ms: float
    audio_s: float = 0.0
    busy_s: float = 0.0  # compute (raw Piper) or send -> last audio (wyoming-piper)


class TTSSystem(Protocol):
    """A system under test."""

    name: str

    async def speak(self, case: TextCase) -> Reply: ...


class RawPiper:
    """The bundled voice in this process, as the worker loads it; no text streaming."""

    name = "raw_piper"

    def __init__(self, threads: int) -> None:
        spec = ModelSpec(id="joe", adapter="piper", options={"threads": threads})
        self.adapter = PiperAdapter(spec)
        self.adapter.load()
        self.adapter.warm_up()

    async def speak(self, case: TextCase) -> Reply:
        began = time.perf_counter()
        text = (
            "".join([piece async for piece in deliver(case.text)]) if case.streamed else case.text
        )
        synthesis_began = time.perf_counter()
        first, samples = 0.0, 0
        # Blocking on the loop on purpose: nothing else runs meanwhile, and a thread hop
        # would only add to Piper's own time.
        for chunk in self.adapter.synthesize(text, SynthesisOptions()):
            first = first or time.perf_counter()
            samples += chunk.size
        busy = time.perf_counter() - synthesis_began
        return Reply((first - began) * 1000, samples / self.adapter.sample_rate, busy)


class VoicefleetWorker:
    """A real `voicefleet worker` over loopback gRPC; STOP after the first frame (it paces its
    frames at real time, so its RTF is the one it measures itself)."""

    name = "voicefleet"

    def __init__(self, client: TTSClient) -> None:
        self.client = client
        self.sessions = 0

    async def speak(self, case: TextCase) -> Reply:
        sid = f"peers-{self.sessions}"
        self.sessions += 1
        await self.client.start_session(sid)
        texts = deliver(case.text) if case.streamed else [case.text]
        began = time.perf_counter()
        call = self.client.synthesize(sid, texts)
        try:
            await asyncio.wait_for(anext(aiter(call)), REQUEST_TIMEOUT_S)
            first = time.perf_counter()
        finally:
            await self.client.control(sid, STOP)
            call.cancel()
            await self.client.end_session(sid)
        return Reply((first - began) * 1000)

    async def rtf(self) -> float:
        """The worker's own real-time factor (compute s per audio s, smoothed)."""
        return float((await self.client.get_capabilities()).load.rtf)


class WyomingPiper:
    """wyoming-piper over TCP, one connection per text, as Home Assistant talks to it."""

    name = "wyoming_piper"

    def __init__(self, server: PeerServer, streaming: bool) -> None:
        self.server = server
        self.streaming = streaming

    async def speak(self, case: TextCase) -> Reply:
        from wyoming.client import AsyncTcpClient

        stream = case.streamed and self.streaming
        async with AsyncTcpClient(*self.server.host_port) as client:
            began = time.perf_counter()
            sender = asyncio.create_task(self._send(client, case, stream))
            try:
                reply = await asyncio.wait_for(
                    self._receive(client, began, stream), REQUEST_TIMEOUT_S
                )
            except TimeoutError:
                raise self.server.failure(f"gave no full reply in {REQUEST_TIMEOUT_S} s") from None
            finally:
                sender.cancel()
            return reply

    async def _send(self, client: Any, case: TextCase, stream: bool) -> None:
        from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

        if not stream:
            text = "".join([p async for p in deliver(case.text)]) if case.streamed else case.text
            await client.write_event(Synthesize(text=text).event())
            return
        await client.write_event(SynthesizeStart().event())
        async for piece in deliver(case.text):
            await client.write_event(SynthesizeChunk(text=piece).event())
        # The whole text too, for servers without streaming (the protocol's rule; ignored here).
        await client.write_event(Synthesize(text=case.text).event())
        await client.write_event(SynthesizeStop().event())

    async def _receive(self, client: Any, began: float, stream: bool) -> Reply:
        from wyoming.audio import AudioChunk, AudioStop
        from wyoming.error import Error
        from wyoming.tts import SynthesizeStopped

        first = last = 0.0
        audio_s = 0.0
        while (event := await client.read_event()) is not None:
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                last = time.perf_counter()
                first = first or last
                audio_s += len(chunk.audio) / (chunk.rate * chunk.width * chunk.channels)
            elif Error.is_type(event.type):
                raise self.server.failure(f"answered an error: {Error.from_event(event).text}")
            elif (SynthesizeStopped if stream else AudioStop).is_type(event.type):
                return Reply((first - began) * 1000, audio_s, last - began)
        raise self.server.failure("closed the connection mid-reply")


def voice_data_dir(directory: Path) -> tuple[str, Path]:
    """A wyoming-piper data dir holding the bundled voice (links, named as it expects)."""
    model = bundled_voice_path()
    directory.mkdir(parents=True, exist_ok=True)
    for source in (model, Path(f"{model}.json")):
        (directory / source.name).symlink_to(source)
    return model.stem, directory


def wyoming_piper_argv(python: Path, data_dir: Path) -> tuple[str, list[str]]:
    """The voice name and the command a user would run (the voice's files already in data-dir,
    so it downloads nothing; no flag is needed or exists for that with the piper backend)."""
    voice, directory = voice_data_dir(data_dir)
    uri = f"tcp://127.0.0.1:{free_port()}"
    argv = [str(python), "-m", "wyoming_piper", "--uri", uri, "--voice", voice]
    return voice, [*argv, "--data-dir", str(directory)]


def check_nothing_downloaded(data_dir: Path, voice: str) -> None:
    """wyoming-piper must have used the linked voice and written nothing to its data dir."""
    names = sorted(path.name for path in data_dir.iterdir())
    if names != [f"{voice}.onnx", f"{voice}.onnx.json"]:
        raise PeerError(f"wyoming-piper changed its data dir {data_dir}: {names}")
    shutil.rmtree(data_dir)


async def measure(
    systems: Sequence[TTSSystem], cases: Sequence[TextCase], rounds: int
) -> dict[str, dict[str, list[Reply]]]:
    """Every system on every text, per round; the systems' order rotates from round to round."""
    for system in systems:  # first calls pay lazy initialisation (wyoming-piper loads its voice)
        await system.speak(WARM_UP)
    replies: dict[str, dict[str, list[Reply]]] = {
        s.name: {c.name: [] for c in cases} for s in systems
    }
    for round_index in range(rounds):
        turn = round_index % len(systems)
        order = [*systems[turn:], *systems[:turn]]
        for case in cases:
            for system in order:
                replies[system.name][case.name].append(await system.speak(case))
                await asyncio.sleep(SETTLE_S)
    return replies


def summarize(
    replies: dict[str, dict[str, list[Reply]]],
    cases: Sequence[TextCase],
    worker_rtf: float,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Per-system figures (flat, for the JSON line) and one row per text."""
    rows: list[dict[str, Any]] = []
    ratios = []
    for case in cases:
        p50 = {
            name: statistics.median(r.first_ms for r in by_case[case.name])
            for name, by_case in replies.items()
        }
        ratio = p50["voicefleet"] / p50["wyoming_piper"]
        ratios.append(ratio)
        every = {
            name: [round(r.first_ms, 1) for r in by_case[case.name]]
            for name, by_case in replies.items()
        }
        row = {"text": case.name, "streamed": case.streamed, **p50, "ratio": ratio}
        rows.append({**row, "first_ms_per_round": every})
    figures: dict[str, float] = {
        "tts_first_audio_ratio_median": round(statistics.median(ratios), 3),
        "tts_first_audio_ratio_max": round(max(ratios), 3),
    }
    for name, by_case in replies.items():
        firsts = [r.first_ms for case_replies in by_case.values() for r in case_replies]
        figures[f"tts_first_audio_ms_p50_{name}"] = round(statistics.median(firsts), 1)
        figures[f"tts_first_audio_ms_p95_{name}"] = round(float(np.percentile(firsts, 95)), 1)
    for name, by_case in replies.items():
        whole = [r for c in cases if not c.streamed for r in by_case[c.name] if r.audio_s]
        if whole:
            rtf = sum(r.busy_s for r in whole) / sum(r.audio_s for r in whole)
            figures[f"tts_rtf_{name}"] = round(rtf, 3)
    figures["tts_rtf_voicefleet"] = round(worker_rtf, 3)
    return figures, rows


def print_rows(rows: list[dict[str, Any]], systems: Sequence[str]) -> None:
    """The per-text table: first audio p50 per system, and voicefleet / wyoming-piper."""
    header = f"{'text':<28}{'stream':>7}" + "".join(f"{s:>15}" for s in systems)
    print(f"\nTTS first audio, p50 ms per text\n{header}{'vf/wyoming':>12}")
    for row in rows:
        cells = "".join(f"{row[s]:>15.1f}" for s in systems)
        print(f"{row['text']:<28}{'yes' if row['streamed'] else '':>7}{cells}{row['ratio']:>12.2f}")
