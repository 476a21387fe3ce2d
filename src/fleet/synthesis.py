"""One-shot speech through the fleet, for the standard APIs (OpenAI speech, Wyoming, the
operator's `say`): a text, or a stream of text, in; 48 kHz s16le mono frames out, routed and
failed over like any conversation's reply.

`synthesize()` raises before its first frame when nothing can be spoken (unknown voice, no
worker, a worker that refuses the text), so an HTTP handler can still answer with an error
status; a failure after audio began ends the stream with `SpeechFailed` too. Closing the
generator early (the client went away) stops the worker and ends its session.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

from voicefleet.audio.pcm import float_to_s16le, s16le_to_float
from voicefleet.audio.resample import StreamResampler
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.router import Router
from voicefleet.fleet.speaker import Speaker
from voicefleet.fleet.speech import SpeakerSettings

FLEET_RATE = 48_000


def check_voice(router: Router, voice: str, model: str = "", language: str = "") -> None:
    """Raise UnknownVoice (or NoWorkerAvailable) now when no routable worker offers `voice`."""
    router.candidates(language, model, set(), voice)


async def synthesize(
    router: Router,
    pool: WorkerPool,
    texts: AsyncIterator[str],
    *,
    voice: str = "",
    model: str = "",
    language: str = "",
    options: Mapping[str, str] | None = None,
    paced: bool = False,
    label: str = "",
    settings: SpeakerSettings | None = None,
) -> AsyncGenerator[bytes, None]:
    """Speak `texts` through the fleet; yields 20 ms 48 kHz s16le frames as they arrive:
    as fast as the worker makes them, or (`paced`) at most its lead ahead of real time.

    Raises SpeechFailed (code `unknown_voice`, `tts_failed`, `tts_rejected`, ...) when the
    speech cannot be (completely) produced."""
    session = f"{label or 'speech'}-{secrets.token_hex(4)}"
    speaker = Speaker(
        router,
        pool,
        session,
        language=language,
        model=model,
        voice=voice,
        options=options,
        paced=paced,
        settings=settings,
    )
    stream = speaker.stream(texts, label)
    try:
        async for frame in stream.frames():
            yield frame.pcm
        if stream.error is not None:
            raise stream.error
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
        with contextlib.suppress(Exception):
            await speaker.close()


class PcmConverter:
    """48 kHz s16le frames to s16le at `rate`, streaming: one soxr state across frames,
    flushed at the end."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler = StreamResampler(FLEET_RATE, rate) if rate != FLEET_RATE else None

    def convert(self, pcm: bytes) -> bytes:
        """One chunk of 48 kHz s16le in; what is ready at `rate` out (may be empty)."""
        if self._resampler is None:
            return pcm
        return float_to_s16le(self._resampler.process(s16le_to_float(pcm)))

    def flush(self) -> bytes:
        """What the converter still holds."""
        if self._resampler is None:
            return b""
        return float_to_s16le(self._resampler.flush())
