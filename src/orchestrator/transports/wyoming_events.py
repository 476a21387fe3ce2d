"""The Wyoming wire for voicefleet's endpoint, without sockets to serve: reading one event with
bounds on its size, checking the fields of the requests we serve, what `describe` answers for
the fleet, and the errors (each with a stable code) a client is sent.

The `wyoming` library reads any `data_length` / `payload_length` a client announces into
memory and trusts the field types of known events; here an oversized event is refused before
a byte of it is read, and a wrongly typed field is an `error` event, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wyoming.audio import AudioFormat
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from voicefleet.asr.config import ASRConfig
from voicefleet.rpc.registry import WorkerRecord

ATTRIBUTION = Attribution(name="voicefleet", url="")
MIN_RATE, MAX_RATE = 4_000, 192_000
MAX_CHANNELS = 8
WIDTHS = (1, 2, 3, 4)  # bytes per sample: u8, s16le, s24le, s32le


class WyomingError(Exception):
    """A request the endpoint refuses: sent to the client as an `error` event with `code`;
    `fatal` closes the connection after it (the stream can no longer be followed)."""

    def __init__(self, code: str, text: str, *, fatal: bool = False) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.fatal = fatal

    def event(self) -> Event:
        """The `error` event the client gets."""
        return Error(text=self.text, code=self.code).event()


async def read_event(reader: asyncio.StreamReader, max_bytes: int) -> Event | None:
    """The next event, or None when the client closed the connection. An event whose data and
    payload together exceed `max_bytes` is refused unread (fatal `event_too_large`)."""
    try:
        line = await reader.readline()
    except ValueError:  # longer than the reader's limit (64 KiB); its rest cannot be found
        raise WyomingError("event_too_large", "an event header over 64 KiB", fatal=True) from None
    if not line.endswith(b"\n"):
        return None  # closed, perhaps mid-line
    header = _json_object(line, "the event header")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise WyomingError("bad_event", "an event needs a string `type`")
    data_length = _length(header, "data_length")
    payload_length = _length(header, "payload_length")
    if data_length + payload_length > max_bytes:
        raise WyomingError(
            "event_too_large",
            f"{kind}: {data_length + payload_length} bytes of data and payload; at most "
            f"{max_bytes} are accepted",
            fatal=True,
        )
    try:
        extra = await reader.readexactly(data_length) if data_length else b""
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None  # closed mid-event
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise WyomingError("bad_event", f"{kind}: `data` must be an object")
    if extra:
        data = {**data, **_json_object(extra, f"{kind}'s data")}
    return Event(type=kind, data=data, payload=payload)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise WyomingError("bad_event", f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise WyomingError("bad_event", f"{what} must be a JSON object")
    return value


def _length(header: Mapping[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        # The bytes that follow cannot be counted: the stream is lost.
        raise WyomingError("bad_event", f"`{key}` must be a whole number >= 0", fatal=True)
    return int(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def text_field(event: Event) -> str:
    """The `text` of a synthesize or synthesize-chunk event."""
    text = event.data.get("text")
    if not isinstance(text, str):
        raise WyomingError("bad_event", f"{event.type}: `text` must be a string")
    return text


@dataclass(frozen=True)
class VoiceChoice:
    """What a request asks to be spoken with: a public voice and/or a language (BCP-47)."""

    voice: str = ""
    language: str = ""


def voice_choice(event: Event, default_voice: str = "") -> VoiceChoice:
    """The voice of a synthesize / synthesize-start event (`voice.name`, else `voice.language`,
    else `default_voice`). A speaker is not a thing the fleet's voices have: ignored."""
    voice = event.data.get("voice")
    if voice is None:
        return VoiceChoice(default_voice)
    if not isinstance(voice, dict):
        raise WyomingError("bad_event", f"{event.type}: `voice` must be an object")
    name, language = voice.get("name"), voice.get("language")
    for key, value in (("name", name), ("language", language)):
        if value is not None and not isinstance(value, str):
            raise WyomingError("bad_event", f"{event.type}: `voice.{key}` must be a string")
    if name:
        return VoiceChoice(str(name))
    if language:
        # Home Assistant and Piper write en_US; the router reads BCP-47 (en-US).
        return VoiceChoice("", str(language).replace("_", "-"))
    return VoiceChoice(default_voice)


def audio_format(event: Event) -> AudioFormat:
    """The rate, width and channels of an audio-start or audio-chunk event, checked."""
    rate, width, channels = (_whole(event, key) for key in ("rate", "width", "channels"))
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WyomingError(
            "bad_audio_format", f"{event.type}: rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE}"
        )
    if width not in WIDTHS:
        raise WyomingError(
            "bad_audio_format", f"{event.type}: width {width} bytes; 1, 2, 3 or 4 are accepted"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise WyomingError(
            "bad_audio_format", f"{event.type}: {channels} channels; 1 to {MAX_CHANNELS}"
        )
    return AudioFormat(rate=rate, width=width, channels=channels)


def _whole(event: Event, key: str) -> int:
    value = event.data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WyomingError("bad_audio_format", f"{event.type}: `{key}` must be a whole number")
    return value


def fleet_voices(workers: Iterable[WorkerRecord]) -> dict[str, tuple[list[str], list[str]]]:
    """Every public voice the workers offer: (its languages, the models that speak it)."""
    voices: dict[str, tuple[set[str], set[str]]] = {}
    for worker in workers:
        for voice, model in worker.voices.items():
            languages, models = voices.setdefault(voice, (set(), set()))
            languages.update(worker.capabilities.languages)
            models.add(model)
    return {name: (sorted(langs), sorted(models)) for name, (langs, models) in voices.items()}


def asr_languages(config: ASRConfig, whisper_languages: Iterable[str]) -> list[str]:
    """What the configured model transcribes: English for an English-only model, else every
    language Whisper knows."""
    if config.model_path is None and config.model.endswith(".en"):
        return ["en"]
    return sorted(whisper_languages)


def describe(
    workers: Iterable[WorkerRecord], asr: ASRConfig, asr_langs: list[str], version: str
) -> Info:
    """The `info` answer: the fleet's public voices (one TTS program, text streaming on) and
    the ASR model (one ASR program)."""
    voices = [
        TtsVoice(
            name=name,
            attribution=ATTRIBUTION,
            installed=True,
            description=", ".join(models),
            version=None,
            languages=languages,
        )
        for name, (languages, models) in sorted(fleet_voices(workers).items())
    ]
    tts = TtsProgram(
        name="voicefleet",
        attribution=ATTRIBUTION,
        installed=True,
        description="voicefleet: speech from the TTS worker fleet",
        version=version,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    model = AsrModel(
        name=asr.model_path or asr.model,
        attribution=ATTRIBUTION,
        installed=True,
        description=f"{asr.engine} {asr.model_path or asr.model}",
        version=None,
        languages=asr_langs,
    )
    stt = AsrProgram(
        name="voicefleet",
        attribution=ATTRIBUTION,
        installed=True,
        description=f"voicefleet: {asr.engine}",
        version=version,
        models=[model],
    )
    return Info(asr=[stt], tts=[tts])
