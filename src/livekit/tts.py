"""FleetTTS: the voicefleet worker fleet as a livekit-agents TTS.

Routing and speech are the fleet client's (voicefleet.fleet, shared with the orchestrator): a
`FleetView` of the Redis registry, a `Router` choosing the worker, and a `ReplyStream` that owns
the worker stream (commands, deadlines, failover to another worker mid-reply). The worker's
20 ms frames (48 kHz mono s16le) go to the livekit-agents `AudioEmitter` as they arrive.

`stream()` forwards text as it is pushed; livekit-agents gives a stream one segment, so its
first `flush()` (or `end_input()`) ends the worker's input. Closing a stream early (the agent was
interrupted) sends STOP to the worker before the gRPC stream is torn down. Every stream has its
own worker session, ended when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Never

from livekit.agents import APIConnectionError, APIError, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from voicefleet.audio.format import FRAME_MS, OUTPUT_SAMPLE_RATE
from voicefleet.fleet import FleetView, Router, RouterConfig
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.speaker import ReplyStream, Speaker, SpeakerSettings
from voicefleet.rpc.channel import WorkerChannelConfig
from voicefleet.rpc.registry import DEFAULT_PREFIX

log = logging.getLogger(__name__)

# STOP and EndSession to a worker that does not answer must not hold up the agent.
_CONTROL_TIMEOUT_S = 2.0


class FleetTTS(tts.TTS[Never]):  # Never: no events beyond the base class's
    """A streaming livekit-agents TTS backed by the voicefleet workers in a Redis registry."""

    def __init__(
        self,
        *,
        redis_url: str = RouterConfig.model_fields["redis_url"].default,
        key_prefix: str = DEFAULT_PREFIX,
        language: str = "en",
        model: str = "",
        voice: str = "",
        worker: WorkerChannelConfig | None = None,
        worker_token: str | None = None,
    ) -> None:
        """`worker` (token, TLS, deadlines) dials the workers; `worker_token` is a shortcut
        for a worker config holding just that token."""
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True),
            sample_rate=OUTPUT_SAMPLE_RATE,
            num_channels=1,
        )
        self.router_config = RouterConfig(redis_url=redis_url, key_prefix=key_prefix)
        self.language = language
        self.voice = voice
        self._model = model
        if worker is None:
            worker = WorkerChannelConfig(token=worker_token)
        elif worker_token is not None:
            worker = worker.model_copy(update={"token": worker_token, "token_file": None})
        self._pool = WorkerPool(worker)
        self._fleet: FleetView | None = None
        self._router: Router | None = None
        self._lock = asyncio.Lock()
        self._prewarm: asyncio.Task[Router] | None = None

    @property
    def model(self) -> str:
        """The fleet model id ("default": each worker's default model)."""
        return self._model or "default"

    @property
    def provider(self) -> str:
        """For livekit-agents metrics."""
        return "voicefleet"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> FleetChunkedStream:
        """Speak one whole text."""
        return FleetChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> FleetSynthesizeStream:
        """Speak text pushed as it arrives (LLM tokens)."""
        return FleetSynthesizeStream(tts=self, conn_options=conn_options)

    def prewarm(self) -> None:
        """Read the registry now rather than on the first reply (needs a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._prewarm is None:
            self._prewarm = loop.create_task(self._ready_router())
            # A failure here is reported again, and handled, by the first synthesis.
            self._prewarm.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def aclose(self) -> None:
        """Stop watching the registry and close the worker channels."""
        if self._prewarm is not None:
            self._prewarm.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._prewarm
            self._prewarm = None
        async with self._lock:
            fleet, self._fleet, self._router = self._fleet, None, None
        if fleet is not None:
            await fleet.close()
        await self._pool.close()

    async def _ready_router(self) -> Router:
        async with self._lock:
            if self._router is None:
                fleet = FleetView(self.router_config)
                await fleet.start()
                self._fleet, self._router = fleet, Router(fleet)
            return self._router

    async def _speak(
        self, texts: AsyncIterator[str], emitter: tts.AudioEmitter, timeout_s: float
    ) -> None:
        """Route, stream the texts to a worker, push its frames; STOP it if cancelled."""
        speaker = Speaker(
            await self._ready_router(),
            self._pool,
            f"livekit-{utils.shortuuid()}",
            language=self.language,
            model=self._model,
            voice=self.voice,
            settings=SpeakerSettings(first_frame_timeout_s=timeout_s),
        )
        stream = speaker.stream(texts)
        # The frames are read in a task of their own, so that a cancellation (interruption)
        # reaches this coroutine first, while the stream still knows its worker.
        reader = asyncio.create_task(_push_frames(stream, emitter))
        try:
            await asyncio.wait({reader})
            reader.result()
            if stream.error is not None:
                if stream.error.code == "tts_failed":
                    raise APIConnectionError(f"voicefleet: {stream.error.message}")
                raise APIError(f"voicefleet worker: {stream.error.message}")
        except asyncio.CancelledError:
            await _bounded(stream.aclose())
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await _bounded(speaker.close())


def _initialize(output_emitter: tts.AudioEmitter, *, stream: bool) -> None:
    """The fleet's output format: 48 kHz mono PCM in 20 ms frames."""
    output_emitter.initialize(
        request_id=utils.shortuuid(),
        sample_rate=OUTPUT_SAMPLE_RATE,
        num_channels=1,
        mime_type="audio/pcm",
        frame_size_ms=FRAME_MS,
        stream=stream,
    )


class FleetChunkedStream(tts.ChunkedStream):
    """One whole text through the fleet."""

    def __init__(self, *, tts: FleetTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._fleet_tts = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        _initialize(output_emitter, stream=False)
        if self.input_text.strip():
            await self._fleet_tts._speak(
                _once(self.input_text), output_emitter, self._conn_options.timeout
            )
        output_emitter.flush()


class FleetSynthesizeStream(tts.SynthesizeStream):
    """Text pushed incrementally, spoken by one worker stream."""

    def __init__(self, *, tts: FleetTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._fleet_tts = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        _initialize(output_emitter, stream=True)
        texts = self._segment_text()
        first = await anext(texts, None)
        if first is None:  # nothing to say: no segment, no worker
            return
        output_emitter.start_segment(segment_id=utils.shortuuid())
        self._mark_started()
        await self._fleet_tts._speak(
            _chain(first, texts), output_emitter, self._conn_options.timeout
        )
        output_emitter.end_segment()

    async def _segment_text(self) -> AsyncIterator[str]:
        """Pushed text up to the first flush, leading blanks dropped."""
        spoken = False
        async for data in self._input_ch:
            if isinstance(data, tts.SynthesizeStream._FlushSentinel):
                return
            if spoken or data.strip():
                spoken = True
                yield data


async def _push_frames(stream: ReplyStream, emitter: tts.AudioEmitter) -> None:
    async for frame in stream.frames():
        emitter.push(frame.pcm)


async def _bounded(step: Coroutine[Any, Any, object]) -> None:
    try:
        async with asyncio.timeout(_CONTROL_TIMEOUT_S):
            await step
    except TimeoutError:
        log.warning("voicefleet worker did not answer within %.0f s", _CONTROL_TIMEOUT_S)


async def _once(text: str) -> AsyncIterator[str]:
    yield text


async def _chain(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for text in rest:
        yield text
