"""The full stack for orchestrator tests: a Redis-protocol server, real Piper workers, a real
orchestrator process, and a microphone that streams in real time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from tests.worker_process import OrchestratorProcess, WorkerProcess
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import normalize_words
from voicefleet.audio.pcm import s16le_to_float
from voicefleet.client.session import ClientSession
from voicefleet.orchestrator.protocol import Hello, ServerMessage

PIPER = {
    "id": "en_US-joe-medium",
    "adapter": "piper",
    "languages": ["en-US"],
    "options": {"threads": 1},
}
_prefixes = itertools.count()

FAST_PIPELINE: dict[str, Any] = {
    "vad": {"hangover_ms": 600},
    "barge_in_min_speech_ms": 300,
}


def piper_worker_config(redis_url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "models": [PIPER],
        "default_model": "en_US-joe-medium",
        "registry": {
            "redis_url": redis_url,
            "key_prefix": prefix,
            "heartbeat_s": 0.3,
            "record_ttl_s": 1.0,
        },
        **extra,
    }


def orchestrator_config(redis_url: str, prefix: str, **extra: Any) -> dict[str, Any]:
    pipeline = {**FAST_PIPELINE, **extra.pop("pipeline", {})}
    return {
        "router": {
            "redis_url": redis_url,
            "key_prefix": prefix,
            "refresh_s": 0.5,
            "failure_cooldown_s": 30,
            **extra.pop("router", {}),
        },
        "pipeline": pipeline,
        **extra,
    }


class Stack:
    """Workers and orchestrators sharing one registry prefix; all stopped at teardown."""

    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = f"stack{next(_prefixes)}-{id(self) % 10000}"
        self.workers: list[WorkerProcess] = []
        self.orchestrators: list[OrchestratorProcess] = []

    def worker(self, **extra: Any) -> WorkerProcess:
        worker = WorkerProcess(self.tmp, piper_worker_config(self.redis_url, self.prefix, **extra))
        self.workers.append(worker)
        return worker.start()

    def orchestrator(self, require_ready: bool = True, **extra: Any) -> OrchestratorProcess:
        process = OrchestratorProcess(
            self.tmp, orchestrator_config(self.redis_url, self.prefix, **extra)
        )
        self.orchestrators.append(process)
        return process.start(require_ready=require_ready)

    def stop(self) -> None:
        for orchestrator in self.orchestrators:
            orchestrator.stop()
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[Stack]:
    built = Stack(tmp_path, redis_url)
    yield built
    built.stop()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """One worker + one orchestrator for a whole test module."""
    built = Stack(tmp_path_factory.mktemp("stack"), redis_url)
    try:  # a process that fails to start must not leave the others running
        built.worker()
        built.orchestrator()
        yield built
    finally:
        built.stop()


class Microphone:
    """Streams 16 kHz PCM in real time: silence, with clips played at chosen moments."""

    def __init__(self, session: ClientSession, rate: int = 16_000) -> None:
        self.session = session
        self.rate = rate
        self._queue: list[np.ndarray] = []
        self._task: asyncio.Task[None] | None = None
        self.clock = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def play(self, clip: np.ndarray) -> float:
        """Queue a clip; returns its duration in seconds."""
        self._queue.append(clip.astype(np.int16))
        return clip.size / self.rate

    @property
    def idle(self) -> bool:
        return not self._queue

    async def _run(self) -> None:
        chunk = self.rate // 50
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        pending = np.zeros(0, np.int16)
        while not self.session.finished:
            if pending.size == 0 and self._queue:
                pending = self._queue.pop(0)
            piece, pending = pending[:chunk], pending[chunk:]
            if piece.size < chunk:
                piece = np.concatenate([piece, np.zeros(chunk - piece.size, np.int16)])
            sent += chunk
            self.clock = sent / self.rate
            await asyncio.sleep(max(0.0, start + sent / self.rate - loop.time()))
            await self.session.send_audio(piece.tobytes())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def open_session(url: str, **hello: Any) -> tuple[ClientSession, list[ServerMessage]]:
    """A connected client session and the list its events are collected in."""
    events: list[ServerMessage] = []
    session = ClientSession(
        url, Hello(sample_rate=hello.pop("sample_rate", 16_000), **hello), on_event=events.append
    )
    await session.open()
    return session, events


async def wait_for_event(
    events: list[ServerMessage], predicate: Callable[[ServerMessage], bool], within_s: float
) -> ServerMessage:
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        for message in events:
            if predicate(message):
                return message
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no matching event within {within_s} s; got {[m.type for m in events]}")


@pytest.fixture(scope="session")
def recognizer() -> Iterator[FasterWhisperRecognizer]:
    """tiny.en in the test process, to check what the person would hear."""
    asr = FasterWhisperRecognizer(ASRConfig())
    asr.load()
    yield asr


def transcribe_reply(recognizer: FasterWhisperRecognizer, pcm48k: bytes) -> str:
    """Transcribe 48 kHz reply audio."""
    audio = soxr.resample(s16le_to_float(pcm48k), 48_000, 16_000)
    return recognizer.transcribe(audio.astype(np.float32)).text


# The four sentences of the failover tests' reply, each by two distinctive words: tiny.en once
# heard "the late train" as "the lake", which one key word alone would read as a lost sentence.
SENTENCE_KEYS = [("boats", "look"), ("bread", "bakery"), ("ducks", "pond"), ("train", "city")]


def heard_each_sentence_once_in_order(heard: str) -> None:
    """Every sentence exactly once (by either of its words), in order: nothing lost, nothing
    heard twice."""
    words = normalize_words(heard)
    assert [max(words.count(k) for k in keys) for keys in SENTENCE_KEYS] == [1, 1, 1, 1], heard
    first = [min(words.index(k) for k in keys if k in words) for keys in SENTENCE_KEYS]
    assert first == sorted(first), heard
