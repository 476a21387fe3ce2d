"""POST /v1/audio/speech: text in, audio streamed out as the fleet speaks it.

The request is checked and routed before the response starts, so every refusal is an HTTP
error; then the body streams (`audio`: the encoded bytes as produced; `sse`: events with
base64 audio), sub-sentence by sub-sentence as the worker cuts it. A failure after audio began
cannot change the status: an `audio` body is cut off (the client sees an incomplete
response), an `sse` body ends with an `error` event. A client that leaves stops the worker.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from voicefleet.audio.encoding import CONTENT_TYPES, FORMATS, encoder_for
from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.speech import SpeechFailed
from voicefleet.fleet.synthesis import PcmConverter, check_voice, synthesize
from voicefleet.orchestrator.transports.openai.context import OpenAIApi
from voicefleet.orchestrator.transports.openai.errors import ApiError, bad_request

log = logging.getLogger(__name__)

OUTPUT_RATE = 24_000  # OpenAI's: `pcm` is 24 kHz s16le mono, and so are the other formats
MIN_SPEED, MAX_SPEED = 0.25, 4.0


@dataclass(frozen=True)
class SpeechRequest:
    """A checked request: what to say, with which fleet voice and model, in which format."""

    text: str
    voice: str
    model: str  # a fleet model id, or "" (the voice's)
    response_format: str
    speed: float
    sse: bool


async def speech(api: OpenAIApi, request: web.Request) -> web.StreamResponse:
    """Check, route, then stream."""
    began = time.perf_counter()
    wanted = parse_speech(api, await _json_body(request))
    if api.speaking >= api.config.max_concurrent_speech:
        raise ApiError(
            429,
            f"{api.speaking} speech requests are running (openai_api.max_concurrent_speech)",
            code="rate_limit_exceeded",
        )
    api.speaking += 1
    try:
        return await _speak(api, request, wanted, began)
    finally:
        api.speaking -= 1


def parse_speech(api: OpenAIApi, body: dict[str, Any]) -> SpeechRequest:
    """The request's fields checked, the OpenAI names resolved to fleet names."""
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise bad_request("'input' must be a non-empty string", "input")
    if len(text) > api.config.max_input_chars:
        raise bad_request(
            f"'input' has {len(text)} characters; the limit is {api.config.max_input_chars}",
            "input",
            "string_above_max_length",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' must be a model name (see GET /v1/models)", "model")
    if model in api.config.speech_models:
        model = ""
    elif model not in api.fleet_models():
        raise ApiError(
            404,
            f"the model {model!r} does not exist (speech models: "
            f"{', '.join([*api.config.speech_models, *api.fleet_models()])})",
            code="model_not_found",
            param="model",
        )
    voice = body.get("voice")
    if isinstance(voice, dict):  # the newer SDKs may send {"id": "..."}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise bad_request("'voice' must be a voice name (see GET /v1/models)", "voice")
    voice = api.config.voice_aliases.get(voice, voice)
    fmt = body.get("response_format", "mp3")
    if fmt not in FORMATS:
        raise bad_request(
            f"'response_format' must be one of {', '.join(FORMATS)}", "response_format"
        )
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise bad_request("'speed' must be a number", "speed")
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise bad_request(f"'speed' must be between {MIN_SPEED} and {MAX_SPEED}", "speed")
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise bad_request("'stream_format' must be 'audio' or 'sse'", "stream_format")
    return SpeechRequest(text, voice, model, str(fmt), float(speed), stream_format == "sse")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("the body must be a JSON object", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    return body


def _refusal(error: SpeechFailed) -> ApiError:
    """What a routing or speaking failure before any audio means to the client."""
    if error.code == "unknown_voice":
        return bad_request(error.message, "voice", "unknown_voice")
    if error.code == "tts_rejected":
        return bad_request(error.message)
    return ApiError(503, f"no TTS worker could speak it: {error}", code="tts_unavailable")


async def _speak(
    api: OpenAIApi, request: web.Request, wanted: SpeechRequest, began: float
) -> web.StreamResponse:
    try:
        check_voice(api.services.router, wanted.voice, wanted.model)
    except NoWorkerAvailable as error:
        raise _refusal(SpeechFailed.unroutable(error)) from None
    options = {"speed": f"{wanted.speed:g}"} if wanted.speed != 1.0 else None
    frames = synthesize(
        api.services.router,
        api.services.pool,
        _once(wanted.text),
        voice=wanted.voice,
        model=wanted.model,
        options=options,
        label="openai",
        settings=api.services.config.speaker_settings(),
    )
    try:
        first = await anext(frames, b"")
    except SpeechFailed as error:
        raise _refusal(error) from None
    content_type = "text/event-stream" if wanted.sse else CONTENT_TYPES[wanted.response_format]
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    writer = _SseWriter(response) if wanted.sse else _AudioWriter(response, request)
    converter = PcmConverter(OUTPUT_RATE)
    encoder = encoder_for(wanted.response_format, OUTPUT_RATE)
    try:
        await writer.write(encoder.encode(converter.convert(first)))
        api.services.metrics.api_first_byte_seconds.observe(time.perf_counter() - began)
        async for pcm in frames:
            await writer.write(encoder.encode(converter.convert(pcm)))
        await writer.write(encoder.encode(converter.flush()) + encoder.finish())
    except SpeechFailed as error:
        log.warning("speech request failed after audio began: %s", error)
        await writer.fail(error)
        return response
    except (ConnectionResetError, ConnectionError):
        log.info("speech request: the client went away; the worker is stopped")
        return response
    finally:
        await frames.aclose()
    await writer.done()
    return response


class _AudioWriter:
    """The encoded bytes as they come."""

    def __init__(self, response: web.StreamResponse, request: web.Request) -> None:
        self.response = response
        self.request = request

    async def write(self, data: bytes) -> None:
        if data:
            await self.response.write(data)

    async def fail(self, _error: SpeechFailed) -> None:
        # No status can be sent now: drop the connection without the chunked terminator,
        # so the client sees an incomplete body rather than a short, "complete" file.
        self.response.force_close()
        if self.request.transport is not None:
            self.request.transport.abort()

    async def done(self) -> None:
        await self.response.write_eof()


class _SseWriter:
    """`speech.audio.delta` events (base64 of the encoded bytes), then `speech.audio.done`."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response

    async def write(self, data: bytes) -> None:
        if data:
            audio = base64.b64encode(data).decode("ascii")
            await self._event({"type": "speech.audio.delta", "audio": audio})

    async def fail(self, error: SpeechFailed) -> None:
        await self._event(
            {"type": "error", "error": {"message": error.message, "code": error.code}}
        )
        await self.response.write_eof()

    async def done(self) -> None:
        await self._event({"type": "speech.audio.done"})
        await self.response.write_eof()

    async def _event(self, event: dict[str, object]) -> None:
        await self.response.write(f"data: {json.dumps(event)}\n\n".encode())


async def _once(text: str) -> AsyncIterator[str]:
    yield text
