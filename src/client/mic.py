"""The live microphone input; needs the optional extra `mic` (sounddevice)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from voicefleet.client.inputs import CHUNK_MS
from voicefleet.client.session import ClientSession
from voicefleet.orchestrator.protocol import MAX_INPUT_RATE, MIN_INPUT_RATE

INSTALL_HINT = "pip install 'voicefleet[mic]'"
PREFERRED_RATE = 16_000


class MicUnavailable(Exception):
    """No microphone can be used: sounddevice is not installed or there is no input device."""


@dataclass
class MicInput:
    """Streams the default input device until `stop` is set or the session ends."""

    sounddevice: Any
    sample_rate: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, session: ClientSession) -> None:
        """Send 20 ms chunks as the device records them."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue()

        def on_audio(indata: Any, frames: int, when: Any, status: Any) -> None:
            # PortAudio calls this on its own thread; hand the bytes to the loop.
            loop.call_soon_threadsafe(chunks.put_nowait, bytes(indata))

        stream = self.sounddevice.RawInputStream(
            samplerate=self.sample_rate,
            channels=1,
            dtype="int16",
            blocksize=self.sample_rate * CHUNK_MS // 1000,
            callback=on_audio,
        )
        with stream:
            while not self.stop.is_set() and not session.finished:
                try:
                    async with asyncio.timeout(0.1):
                        chunk = await chunks.get()
                except TimeoutError:
                    continue
                await session.send_audio(chunk)


def open_microphone() -> MicInput:
    """The default input device at 16 kHz when it supports it, else at its own rate."""
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # OSError: the PortAudio library itself is missing
        raise MicUnavailable(
            f"--mic needs the sounddevice package: {INSTALL_HINT} ({error})"
        ) from None
    try:
        device = sounddevice.query_devices(kind="input")
    except (sounddevice.PortAudioError, ValueError) as error:
        raise MicUnavailable(f"--mic: no audio input device found ({error})") from None
    rate = PREFERRED_RATE
    try:
        sounddevice.check_input_settings(samplerate=rate, channels=1, dtype="int16")
    except (sounddevice.PortAudioError, ValueError):
        rate = min(max(int(device["default_samplerate"]), MIN_INPUT_RATE), MAX_INPUT_RATE)
    return MicInput(sounddevice=sounddevice, sample_rate=rate)
