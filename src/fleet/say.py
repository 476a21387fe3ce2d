"""`voicefleet fleet say`: one text spoken through the router, as any reply would be (routing,
failover), written to a WAV file; reports which worker spoke and how soon the first audio came.
"""

from __future__ import annotations

import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from voicefleet.fleet.admin import OperatorError
from voicefleet.fleet.config import RouterConfig
from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.router import Router
from voicefleet.fleet.speech import SpeechFailed
from voicefleet.fleet.synthesis import PcmConverter, synthesize
from voicefleet.fleet.view import FleetView
from voicefleet.rpc.channel import WorkerChannelConfig
from voicefleet.rpc.redis_conn import redacted


class _WatchedRouter(Router):
    """A Router that remembers which workers delivered audio (in order, failovers included)."""

    def __init__(self, fleet: FleetView) -> None:
        super().__init__(fleet)
        self.spoke: list[str] = []

    def observe(self, name: str, first_audio_ms: float) -> None:
        """Note the worker, then rank as usual."""
        self.spoke.append(name)
        super().observe(name, first_audio_ms)


@dataclass
class SayResult:
    """What `say` produced."""

    path: Path
    rate: int
    workers: list[str] = field(default_factory=list)
    first_audio_ms: float = 0.0
    total_ms: float = 0.0
    audio_s: float = 0.0


async def _one(text: str) -> AsyncIterator[str]:
    yield text


async def say(
    config: RouterConfig,
    channel: WorkerChannelConfig,
    text: str,
    out: Path,
    *,
    voice: str = "",
    rate: int = 48_000,
) -> SayResult:
    """Speak `text` through the fleet into `out` (mono 16-bit WAV at `rate`)."""
    view = FleetView(config)
    pool = WorkerPool(channel)
    try:
        if not await view.refresh():
            why = view.last_error.removeprefix("registry unreachable: ")
            raise OperatorError(f"cannot reach the registry at {redacted(config.redis_url)}: {why}")
        router = _WatchedRouter(view)
        result = SayResult(out, rate)
        converter = PcmConverter(rate)
        chunks: list[bytes] = []
        began = time.perf_counter()
        try:
            async for pcm in synthesize(router, pool, _one(text), voice=voice, label="say"):
                if not chunks:
                    result.first_audio_ms = (time.perf_counter() - began) * 1000
                chunks.append(converter.convert(pcm))
        except (SpeechFailed, NoWorkerAvailable) as error:
            raise OperatorError(str(error)) from None
        chunks.append(converter.flush())
        result.total_ms = (time.perf_counter() - began) * 1000
        result.workers = router.spoke
        pcm = b"".join(chunks)
        result.audio_s = len(pcm) / 2 / rate
        _write_wav(out, pcm, rate)
        return result
    finally:
        await pool.close()
        await view.close()


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    try:
        with wave.open(str(path), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(rate)
            writer.writeframes(pcm)
    except OSError as error:
        raise OperatorError(f"cannot write {path}: {error.strerror or error}") from None
