"""POST /v1/audio/transcriptions: an uploaded file (anything FFmpeg decodes) through the ASR
service the conversations use, as `json`, `text`, `verbose_json` (segments; words with
`timestamp_granularities[]=word`), `srt` or `vtt`; `stream=true` sends transcript deltas as
segments are decoded.

The upload is read in pieces and refused (413) past `openai_api.max_upload_bytes`, decoding
stops (400) past `max_audio_s` of audio, and at most `max_concurrent_transcriptions` files are
decoded at once (429 beyond): a long file never takes every ASR thread from the conversations.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

from aiohttp import BodyPartReader, web

from voicefleet.asr.base import ASRError
from voicefleet.asr.segments import Segment, SegmentedTranscript, SegmentOptions
from voicefleet.audio.decoding import AudioDecodeError, decode_audio
from voicefleet.orchestrator.transports.openai.context import OpenAIApi
from voicefleet.orchestrator.transports.openai.errors import ApiError, bad_request

RATE = 16_000
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
_READ_BYTES = 64 * 1024


@dataclass
class TranscriptionRequest:
    """The multipart form's fields, checked."""

    audio: bytes = b""
    model: str = ""
    language: str | None = None
    prompt: str = ""
    response_format: str = "json"
    temperature: float = 0.0
    granularities: set[str] = field(default_factory=set)
    stream: bool = False


async def transcriptions(api: OpenAIApi, request: web.Request) -> web.StreamResponse:
    """Read and check the form, decode the file, transcribe, answer in the asked format."""
    form = await read_form(api, request)
    check_form(api, form)
    if not api.services.asr.ready:
        raise ApiError(503, "the ASR model is not loaded yet", code="asr_unavailable")
    if api.transcribing >= api.config.max_concurrent_transcriptions:
        raise ApiError(
            429,
            f"{api.transcribing} file transcription(s) running "
            "(openai_api.max_concurrent_transcriptions)",
            code="rate_limit_exceeded",
        )
    api.transcribing += 1
    try:
        loop = asyncio.get_running_loop()
        decode = partial(decode_audio, form.audio, rate=RATE, max_seconds=api.config.max_audio_s)
        try:
            audio = await loop.run_in_executor(None, decode)
        except AudioDecodeError as error:
            raise bad_request(f"'file': {error}", "file", "invalid_audio") from None
        options = SegmentOptions(
            language=form.language,
            prompt=form.prompt,
            words="word" in form.granularities,
            temperature=form.temperature,
        )
        language = api.services.asr.recognizer.language_for(form.language)
        transcript = SegmentedTranscript(language, round(audio.size / RATE, 3))
        segments = api.services.asr.segments(audio, options)
        if form.stream:
            return await _stream(request, segments, transcript)
        try:
            async for segment in segments:
                transcript.segments.append(segment)
        except ASRError as error:
            raise ApiError(503, f"transcription failed: {error}", code="asr_failed") from None
        return render(form, transcript)
    finally:
        api.transcribing -= 1


async def read_form(api: OpenAIApi, request: web.Request) -> TranscriptionRequest:
    """The multipart fields; the file read piece by piece up to the upload limit."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request("the body must be multipart/form-data with a 'file' part")
    form = TranscriptionRequest()
    limit = api.config.max_upload_bytes
    try:
        reader = await request.multipart()
        seen = 0
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise bad_request("nested multipart bodies are not accepted")
            data = bytearray()
            while chunk := await part.read_chunk(_READ_BYTES):
                seen += len(chunk)
                if seen > limit:
                    raise ApiError(
                        413,
                        f"the upload is larger than {limit} bytes (openai_api.max_upload_bytes)",
                        code="file_too_large",
                        param="file",
                    )
                data.extend(chunk)
            _set_field(form, part.name or "", bytes(data))
    except (ValueError, AssertionError) as error:  # aiohttp's errors for a broken body
        raise bad_request(f"the multipart body could not be read ({error})") from None
    return form


def _set_field(form: TranscriptionRequest, name: str, data: bytes) -> None:
    if name == "file":
        form.audio = data
        return
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"'{name}' must be UTF-8 text", name) from None
    if name == "model":
        form.model = value
    elif name == "language":
        form.language = value.strip() or None
    elif name == "prompt":
        form.prompt = value
    elif name == "response_format":
        form.response_format = value
    elif name == "temperature":
        try:
            form.temperature = float(value)
        except ValueError:
            raise bad_request("'temperature' must be a number", "temperature") from None
    elif name in ("timestamp_granularities[]", "timestamp_granularities"):
        form.granularities.add(value)
    elif name == "stream":
        form.stream = value.strip().lower() == "true"
    # Other fields OpenAI defines (include[], chunking_strategy, ...) change nothing here.


def check_form(api: OpenAIApi, form: TranscriptionRequest) -> None:
    """The fields' values, before any decoding."""
    if not form.audio:
        raise bad_request("a non-empty 'file' part is required", "file")
    if not form.model:
        raise bad_request("'model' is required (see GET /v1/models)", "model")
    known = [*api.config.transcription_models, api.asr_model()]
    if form.model not in known:
        raise ApiError(
            404,
            f"the model {form.model!r} does not exist (transcription models: {', '.join(known)})",
            code="model_not_found",
            param="model",
        )
    if form.response_format not in RESPONSE_FORMATS:
        formats = ", ".join(RESPONSE_FORMATS)
        raise bad_request(f"'response_format' must be one of {formats}", "response_format")
    unknown = form.granularities - {"word", "segment"}
    if unknown:
        raise bad_request(
            f"'timestamp_granularities[]' must be word or segment, not {sorted(unknown)}",
            "timestamp_granularities",
        )
    if not 0.0 <= form.temperature <= 1.0:
        raise bad_request("'temperature' must be between 0 and 1", "temperature")
    if form.stream and form.response_format not in ("json", "text"):
        raise bad_request("'stream' works with response_format json or text", "stream")


async def _stream(
    request: web.Request, segments: AsyncIterator[Segment], transcript: SegmentedTranscript
) -> web.StreamResponse:
    """`transcript.text.delta` per decoded segment, then `transcript.text.done`."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    async def event(payload: dict[str, object]) -> None:
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())

    try:
        async for segment in segments:
            delta = segment.text if not transcript.segments else f" {segment.text}"
            transcript.segments.append(segment)
            await event({"type": "transcript.text.delta", "delta": delta})
    except ASRError as error:
        await event({"type": "error", "error": {"message": str(error), "code": "asr_failed"}})
    else:
        await event({"type": "transcript.text.done", "text": transcript.text})
    await response.write_eof()
    return response


def render(form: TranscriptionRequest, transcript: SegmentedTranscript) -> web.Response:
    """The transcript in the asked format."""
    usage = {"type": "duration", "seconds": transcript.duration_s}
    fmt = form.response_format
    if fmt == "text":
        return web.Response(text=transcript.text + "\n", content_type="text/plain")
    if fmt == "srt":
        return web.Response(text=subtitles(transcript.segments, ","), content_type="text/plain")
    if fmt == "vtt":
        body = "WEBVTT\n\n" + subtitles(transcript.segments, ".")
        return web.Response(text=body, content_type="text/vtt")
    if fmt == "json":
        return web.json_response({"text": transcript.text, "usage": usage})
    verbose: dict[str, object] = {
        "task": "transcribe",
        "language": transcript.language,
        "duration": transcript.duration_s,
        "text": transcript.text,
        "segments": [_segment_json(s) for s in transcript.segments],
        "usage": usage,
    }
    if "word" in form.granularities:
        verbose["words"] = [
            {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
            for w in transcript.words
        ]
    return web.json_response(verbose)


def _segment_json(segment: Segment) -> dict[str, object]:
    return {
        "id": segment.id,
        "seek": 0,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": [],
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def subtitles(segments: list[Segment], decimal: str) -> str:
    """SRT (decimal ",") or WebVTT cues (decimal ".", after the header) of the segments."""
    cues = []
    for number, segment in enumerate(segments, start=1):
        start, end = _clock(segment.start, decimal), _clock(segment.end, decimal)
        cues.append(f"{number}\n{start} --> {end}\n{segment.text}\n")
    return "\n".join(cues)


def _clock(seconds: float, decimal: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"
