"""What the client sends after `ready`: audio paced like a microphone, or a text message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from voicefleet.client.session import ClientSession

CHUNK_MS = 20


@dataclass(frozen=True)
class PacedAudio:
    """PCM16 mono sent in real time in 20 ms chunks, then `tail_silence` seconds of zeros."""

    pcm: bytes
    sample_rate: int
    tail_silence: float = 1.5
    chunk_ms: int = CHUNK_MS

    async def send(self, session: ClientSession) -> None:
        """Send every chunk at the moment a microphone would have finished recording it."""
        silence = bytes(2 * round(self.tail_silence * self.sample_rate))
        pcm = self.pcm + silence
        chunk_samples = max(1, self.sample_rate * self.chunk_ms // 1000)
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent_samples = 0
        for offset in range(0, len(pcm), 2 * chunk_samples):
            chunk = pcm[offset : offset + 2 * chunk_samples]
            sent_samples += len(chunk) // 2
            # Deadlines from the start, not sleeps per chunk, so scheduling jitter never adds up.
            await asyncio.sleep(max(0.0, start + sent_samples / self.sample_rate - loop.time()))
            if session.finished:
                return
            await session.send_audio(chunk)


@dataclass(frozen=True)
class TextInput:
    """A `text` message: `answer` asks the responder, `say` has the agent speak it as is."""

    text: str
    mode: Literal["answer", "say"] = "answer"

    async def send(self, session: ClientSession) -> None:
        """Send the message."""
        await session.send_text(self.text, self.mode)
