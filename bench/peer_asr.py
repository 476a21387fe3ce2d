"""ASR side of bench/peers.py: latency after the end of audio and WER of voicefleet's ASRService
(as the orchestrator calls it, default config), raw faster-whisper (transcribe() defaults) and
wyoming-faster-whisper (Wyoming over TCP; thread-matched, and with its own defaults), on the
same clips (Piper and espeak-ng voices), interleaved.

Latency is the time from handing over the end of the audio to the text: for ASRService and raw
faster-whisper the call itself (they get the whole clip, as the orchestrator's VAD hands it
over); for wyoming-faster-whisper, from sending the last AudioChunk and AudioStop to the
Transcript event (the earlier chunks were sent first, as a live microphone would have).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from faster_whisper import WhisperModel

from bench.peer_servers import PeerServer
from tests.speech import Int16Samples, espeak_speech, piper_speech, to_float, trim, with_silence
from tests.worker_process import free_port
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import bundled_model_path
from voicefleet.asr.service import ASRService
from voicefleet.asr.wer import word_error_rate

RATE = 16000
CHUNK_SAMPLES = 1024  # wyoming's usual chunk (64 ms at 16 kHz)
# Before the last chunk: the server has taken the earlier ones, as it would from a live stream.
LIVE_GAP_S = 0.1
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Utterance:
    """What is said and by which voice."""

    voice: str  # "piper" or "espeak"
    text: str


UTTERANCES = (
    Utterance("piper", "Yes."),
    Utterance("piper", "Turn on the kitchen lights please."),
    Utterance("piper", "Can you book a table for two at seven tomorrow night?"),
    Utterance(
        "piper",
        "I would like to change my flight to Thursday morning and add a window seat if there "
        "is one left.",
    ),
    Utterance(
        "piper",
        "Last week I ordered a blue jacket in medium, but it arrived in the wrong size, so I "
        "would like to send it back and get the large one instead, or a refund to my card.",
    ),
    Utterance("espeak", "What time is it?"),
    Utterance("espeak", "Set a timer for ten minutes."),
    Utterance("espeak", "Please remind me to call my sister when I get home from work."),
    Utterance(
        "espeak",
        "The meeting has been moved to three in the afternoon, so we still have time for lunch "
        "before it starts.",
    ),
)
QUICK_UTTERANCES = (1, 2, 6, 7)


def speak(utterance: Utterance) -> Int16Samples:
    """The utterance as 16 kHz int16, trimmed, with a little silence around it."""
    if utterance.voice == "piper":
        clip = piper_speech(utterance.text, RATE)
    else:
        clip = espeak_speech(utterance.text, RATE)
    return with_silence(trim(clip), RATE, before_s=0.2, after_s=0.3)


class ASRSystem(Protocol):
    """A system under test: the text, and the latency after the end of audio (ms)."""

    name: str

    async def transcribe(self, clip: Int16Samples) -> tuple[str, float]: ...


class VoicefleetASR:
    """ASRService(ASRConfig()): the orchestrator's path, default config."""

    name = "voicefleet"

    def __init__(self) -> None:
        self.service = ASRService(ASRConfig())

    async def start(self) -> VoicefleetASR:
        await self.service.start()
        return self

    async def transcribe(self, clip: Int16Samples) -> tuple[str, float]:
        audio = to_float(clip)
        began = time.perf_counter()
        transcript = await self.service.transcribe(audio)
        return transcript.text, (time.perf_counter() - began) * 1000


class RawWhisper:
    """WhisperModel.transcribe() with its defaults; model, compute type and threads as ASRConfig."""

    name = "raw_faster_whisper"

    def __init__(self, config: ASRConfig) -> None:
        self.model = WhisperModel(
            str(bundled_model_path()),
            device="cpu",
            compute_type=config.compute_type,
            cpu_threads=config.cpu_threads,
        )

    def _run(self, audio: np.ndarray[Any, Any]) -> str:
        segments, _info = self.model.transcribe(audio)
        return " ".join(text for segment in segments if (text := segment.text.strip()))

    async def transcribe(self, clip: Int16Samples) -> tuple[str, float]:
        audio = to_float(clip)
        began = time.perf_counter()
        text = await asyncio.to_thread(self._run, audio)
        return text, (time.perf_counter() - began) * 1000


class WyomingWhisper:
    """wyoming-faster-whisper over TCP, one connection per utterance, as Home Assistant does."""

    def __init__(self, name: str, server: PeerServer) -> None:
        self.name = name
        self.server = server

    async def transcribe(self, clip: Int16Samples) -> tuple[str, float]:
        from wyoming.asr import Transcribe
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.client import AsyncTcpClient

        pcm = clip.astype("<i2").tobytes()
        step = CHUNK_SAMPLES * 2
        chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)]
        async with AsyncTcpClient(*self.server.host_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            for chunk in chunks[:-1]:
                await client.write_event(
                    AudioChunk(rate=RATE, width=2, channels=1, audio=chunk).event()
                )
            await asyncio.sleep(LIVE_GAP_S)
            began = time.perf_counter()
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=chunks[-1]).event()
            )
            await client.write_event(AudioStop().event())
            try:
                text = await asyncio.wait_for(self._transcript(client), REQUEST_TIMEOUT_S)
            except TimeoutError:
                raise self.server.failure(f"gave no transcript in {REQUEST_TIMEOUT_S} s") from None
            return text, (time.perf_counter() - began) * 1000

    async def _transcript(self, client: Any) -> str:
        from wyoming.asr import Transcript
        from wyoming.error import Error

        while (event := await client.read_event()) is not None:
            if Transcript.is_type(event.type):
                return str(Transcript.from_event(event).text).strip()
            if Error.is_type(event.type):
                raise self.server.failure(f"answered an error: {Error.from_event(event).text}")
        raise self.server.failure("closed the connection without a transcript")


def wyoming_whisper_argv(python: Path, data_dir: Path, matched: ASRConfig | None) -> list[str]:
    """The command a user would run on the bundled tiny.en directory; `matched`: with the
    threads, beam, compute type and language of that config, else the server's defaults."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{free_port()}"]
    argv += ["--model", str(bundled_model_path()), "--data-dir", str(data_dir)]
    argv += ["--local-files-only"]
    if matched is not None:
        argv += ["--cpu-threads", str(matched.cpu_threads), "--beam-size", str(matched.beam_size)]
        argv += ["--compute-type", matched.compute_type, "--language", matched.language]
    return argv


@dataclass
class Heard:
    """One transcription."""

    text: str
    latency_ms: float
    wer: float


async def measure(
    systems: Sequence[ASRSystem],
    clips: Sequence[tuple[Utterance, Int16Samples]],
    rounds: int,
) -> dict[str, list[list[Heard]]]:
    """Every system on every clip, per round (rotating order); [system][clip] -> rounds."""
    for system in systems:  # first calls pay lazy initialisation
        await system.transcribe(clips[0][1])
    heard: dict[str, list[list[Heard]]] = {s.name: [[] for _ in clips] for s in systems}
    for round_index in range(rounds):
        turn = round_index % len(systems)
        order = [*systems[turn:], *systems[:turn]]
        for index, (utterance, clip) in enumerate(clips):
            for system in order:
                text, latency = await system.transcribe(clip)
                wer = word_error_rate(utterance.text, text)
                heard[system.name][index].append(Heard(text, latency, wer))
    return heard


def summarize(
    heard: dict[str, list[list[Heard]]], clips: Sequence[tuple[Utterance, Int16Samples]]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Per-system figures (flat, for the JSON line) and one row per clip."""
    figures: dict[str, float] = {}
    for name, by_clip in heard.items():
        latencies = [h.latency_ms for rounds in by_clip for h in rounds]
        figures[f"asr_latency_ms_p50_{name}"] = round(statistics.median(latencies), 1)
        figures[f"asr_latency_ms_p95_{name}"] = round(float(np.percentile(latencies, 95)), 1)
        figures[f"asr_wer_{name}"] = round(statistics.mean(h.wer for r in by_clip for h in r), 3)
    rows: list[dict[str, Any]] = []
    for index, (utterance, clip) in enumerate(clips):
        row: dict[str, Any] = {"voice": utterance.voice, "text": utterance.text}
        row["duration_s"] = round(clip.size / RATE, 2)
        for name, by_clip in heard.items():
            row[name] = {
                "latency_ms_p50": round(statistics.median(h.latency_ms for h in by_clip[index]), 1),
                "wer": round(statistics.mean(h.wer for h in by_clip[index]), 3),
                "text": by_clip[index][0].text,
            }
        rows.append(row)
    return figures, rows


def print_rows(rows: list[dict[str, Any]], systems: Sequence[str]) -> None:
    """The per-clip table: latency p50 (and WER) per system."""
    header = f"{'clip':<36}{'voice':>7}{'secs':>6}" + "".join(f"{s:>22}" for s in systems)
    print(f"\nASR latency after end of audio, p50 ms (WER) per clip\n{header}")
    for row in rows:
        label = row["text"] if len(row["text"]) <= 34 else row["text"][:31] + "..."
        cells = "".join(f"{row[s]['latency_ms_p50']:>14.1f} ({row[s]['wer']:.2f})" for s in systems)
        print(f"{label:<36}{row['voice']:>7}{row['duration_s']:>6.1f}{cells}")
