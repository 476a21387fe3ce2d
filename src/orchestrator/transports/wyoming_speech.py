"""Wyoming's text-to-speech requests on one connection: `synthesize` (the whole text), and a
text stream (`synthesize-start`, `synthesize-chunk`..., `synthesize-stop`) whose audio flows
out while its text still comes in. Both speak through the fleet (fleet.synthesis): audio-start
with the first frame, an audio-chunk per 20 ms frame as it arrives (at `sample_rate`, s16le
mono), audio-stop; a stream ends with synthesize-stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import SynthesizeStopped

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.speech import SpeechFailed
from voicefleet.fleet.synthesis import PcmConverter, check_voice, synthesize
from voicefleet.orchestrator.config import WyomingConfig
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.transports.wyoming_events import (
    VoiceChoice,
    WyomingError,
    text_field,
    voice_choice,
)

Send = Callable[[Event], Awaitable[None]]


@dataclass(eq=False)
class _Reply:
    """One reply's text (all of it at once, or a stream's chunks) and its audio's state."""

    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    chars: int = 0
    failed: bool = False  # refused or cut off: the rest of a stream's chunks are dropped
    audio_open: bool = False  # audio-start sent, audio-stop not yet
    task: asyncio.Task[None] | None = None

    async def texts(self) -> AsyncIterator[str]:
        """The text as it comes, until its end."""
        while (text := await self.queue.get()) is not None:
            if text:
                yield text


class Speech:
    """The speech requests of one connection, one reply at a time."""

    def __init__(self, config: WyomingConfig, services: Services, send: Send) -> None:
        self.config = config
        self.services = services
        self.send = send
        self._stream: _Reply | None = None

    @property
    def streaming(self) -> bool:
        """A text stream is open (synthesize-start came, synthesize-stop not yet)."""
        return self._stream is not None

    async def synthesize(self, event: Event) -> None:
        """A whole text: spoken, then this returns (WyomingError when it cannot be)."""
        text = text_field(event)
        choice = voice_choice(event, self.config.voice)
        if len(text) > self.config.max_text_chars:
            raise WyomingError(
                "text_too_long", f"{len(text)} characters; at most {self.config.max_text_chars}"
            )
        if not text.strip():  # nothing to say: no worker session for it
            await self._audio_out(_Reply(), b"")
            await self.send(AudioStop().event())
            return
        reply = _Reply()
        reply.queue.put_nowait(text)
        reply.queue.put_nowait(None)
        await self._speak(reply, choice)

    def start(self, event: Event) -> None:
        """synthesize-start: the voice is checked now, the reply starts before any text."""
        if self._stream is not None:
            raise WyomingError("stream_open", "synthesize-start again before synthesize-stop")
        choice = voice_choice(event, self.config.voice)
        stream = self._stream = _Reply()
        try:
            check_voice(self.services.router, choice.voice, language=choice.language)
        except NoWorkerAvailable as error:
            stream.failed = True
            failed = SpeechFailed.unroutable(error)
            raise WyomingError(failed.code, failed.message) from None
        # Started before the text: the worker session opens while the first words come.
        stream.task = asyncio.create_task(self._speak_stream(stream, choice))

    async def chunk(self, event: Event) -> None:
        """synthesize-chunk: more of the stream's text."""
        stream = self._stream
        if stream is None:
            raise WyomingError("no_stream", "synthesize-chunk outside synthesize-start ... -stop")
        text = text_field(event)
        if stream.failed:
            return
        stream.chars += len(text)
        if stream.chars > self.config.max_text_chars:
            await self.close(keep_stream=True)
            limit = self.config.max_text_chars
            raise WyomingError("text_too_long", f"the stream passed {limit} characters: stopped")
        stream.queue.put_nowait(text)

    async def stop(self) -> None:
        """synthesize-stop: the text is complete; returns once its audio is out."""
        stream = self._stream
        if stream is None:
            raise WyomingError("no_stream", "synthesize-stop without synthesize-start")
        stream.queue.put_nowait(None)
        if stream.task is not None:
            await stream.task  # the reply plays out; its own errors were sent
        self._stream = None
        await self.send(SynthesizeStopped().event())

    async def close(self, keep_stream: bool = False) -> None:
        """Stop a stream's reply now (its audio, when begun, ends with audio-stop);
        `keep_stream` leaves the stream open, failed, for its synthesize-stop."""
        stream = self._stream
        if stream is None:
            return
        stream.failed = True
        if stream.task is not None and not stream.task.done():
            stream.task.cancel()
            await asyncio.gather(stream.task, return_exceptions=True)
        if not keep_stream:
            self._stream = None
        elif stream.audio_open:
            stream.audio_open = False
            await self.send(AudioStop().event())

    async def _speak_stream(self, stream: _Reply, choice: VoiceChoice) -> None:
        try:
            await self._speak(stream, choice)
        except WyomingError as error:
            stream.failed = True
            self.services.metrics.wyoming_errors.labels(error.code).inc()
            with contextlib.suppress(ConnectionError, OSError):
                await self.send(error.event())
        except (ConnectionError, OSError):
            stream.failed = True  # the client left; the connection's read loop sees it too

    async def _speak(self, reply: _Reply, choice: VoiceChoice) -> None:
        """Speak a reply: audio-start with its first frame, an audio-chunk per frame as it
        arrives, audio-stop; WyomingError (after audio-stop, when audio began) if it fails."""
        converter = PcmConverter(self.config.sample_rate)
        speech = synthesize(
            self.services.router,
            self.services.pool,
            reply.texts(),
            voice=choice.voice,
            language=choice.language,
            label="wyoming",
            settings=self.services.config.speaker_settings(),
        )
        try:
            async with contextlib.aclosing(speech):
                async for frame in speech:
                    await self._audio_out(reply, converter.convert(frame))
        except SpeechFailed as error:
            if reply.audio_open:  # what was spoken stays a whole audio stream
                reply.audio_open = False
                await self.send(AudioStop().event())
            raise WyomingError(error.code, error.message) from None
        await self._audio_out(reply, converter.flush())
        reply.audio_open = False
        await self.send(AudioStop().event())

    async def _audio_out(self, reply: _Reply, pcm: bytes) -> None:
        rate = self.config.sample_rate
        if not reply.audio_open:
            await self.send(AudioStart(rate=rate, width=2, channels=1).event())
            reply.audio_open = True
        if pcm:
            await self.send(AudioChunk(rate=rate, width=2, channels=1, audio=pcm).event())
