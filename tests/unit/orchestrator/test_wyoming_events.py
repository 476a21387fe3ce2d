"""The Wyoming wire without a server: bounded event reading, request fields checked, voice
choice, and what `describe` says about a fleet."""

from __future__ import annotations

import asyncio
import json

import pytest
from wyoming.event import Event
from wyoming.info import Info

from voicefleet.asr.config import ASRConfig
from voicefleet.orchestrator.transports.wyoming_events import (
    VoiceChoice,
    WyomingError,
    asr_languages,
    audio_format,
    describe,
    read_event,
    text_field,
    voice_choice,
)
from voicefleet.rpc.registry import WorkerCapabilities, WorkerLoad, WorkerRecord


def reader_of(*chunks: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


def wire(kind: str, data: dict[str, object] | None = None, payload: bytes = b"") -> bytes:
    """One event as the wyoming library writes it (data after the header line)."""
    header: dict[str, object] = {"type": kind, "version": "1.10.2"}
    body = json.dumps(data).encode() if data else b""
    if body:
        header["data_length"] = len(body)
    if payload:
        header["payload_length"] = len(payload)
    return json.dumps(header).encode() + b"\n" + body + payload


async def test_an_event_with_data_and_payload_is_read_whole() -> None:
    reader = reader_of(wire("audio-chunk", {"rate": 16000}, b"\x01\x02"), wire("describe"))
    event = await read_event(reader, 1024)
    assert event == Event("audio-chunk", {"rate": 16000}, b"\x01\x02")
    assert await read_event(reader, 1024) == Event("describe", {}, None)
    assert await read_event(reader, 1024) is None


async def test_inline_data_and_data_after_the_header_are_merged() -> None:
    header = {"type": "synthesize", "data": {"text": "hi"}, "data_length": 13}
    reader = reader_of(json.dumps(header).encode() + b"\n" + b'{"voice": {}}')
    event = await read_event(reader, 1024)
    assert event is not None and event.data == {"text": "hi", "voice": {}}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json\n", "bad_event"),
        (b"[1, 2]\n", "bad_event"),
        (b'{"data": {}}\n', "bad_event"),
        (b'{"type": 7}\n', "bad_event"),
        (b'{"type": "describe", "data": [1]}\n', "bad_event"),
    ],
)
async def test_a_bad_header_is_an_error_and_the_next_event_is_still_read(
    line: bytes, code: str
) -> None:
    reader = reader_of(line, wire("describe"))
    with pytest.raises(WyomingError) as caught:
        await read_event(reader, 1024)
    assert caught.value.code == code and not caught.value.fatal
    assert await read_event(reader, 1024) == Event("describe", {}, None)


async def test_data_that_is_not_an_object_is_an_error_with_the_stream_kept() -> None:
    header = {"type": "synthesize", "data_length": 3}
    reader = reader_of(json.dumps(header).encode() + b"\n[1]", wire("describe"))
    with pytest.raises(WyomingError, match="must be a JSON object"):
        await read_event(reader, 1024)
    assert await read_event(reader, 1024) == Event("describe", {}, None)


async def test_an_oversized_event_is_refused_before_it_is_read() -> None:
    reader = reader_of(
        json.dumps({"type": "audio-chunk", "payload_length": 10**12}).encode() + b"\n"
    )
    with pytest.raises(WyomingError) as caught:
        await read_event(reader, 1024)
    assert caught.value.code == "event_too_large" and caught.value.fatal
    assert "1000000000000 bytes" in caught.value.text


@pytest.mark.parametrize("length", [-1, "12", 1.5, True])
async def test_a_length_that_cannot_be_counted_is_fatal(length: object) -> None:
    reader = reader_of(json.dumps({"type": "x", "payload_length": length}).encode() + b"\n")
    with pytest.raises(WyomingError) as caught:
        await read_event(reader, 1024)
    assert caught.value.code == "bad_event" and caught.value.fatal


async def test_a_header_past_the_reader_limit_is_fatal() -> None:
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(b"x" * 5000 + b"\n")
    with pytest.raises(WyomingError) as caught:
        await read_event(reader, 1024)
    assert caught.value.code == "event_too_large" and caught.value.fatal


async def test_a_connection_closed_mid_event_reads_as_closed() -> None:
    assert await read_event(reader_of(wire("audio-chunk", None, b"abcd")[:-2]), 1024) is None
    assert await read_event(reader_of(b'{"type": "describe"'), 1024) is None


def test_text_must_be_a_string() -> None:
    assert text_field(Event("synthesize", {"text": "Hello."})) == "Hello."
    for data in ({}, {"text": None}, {"text": ["Hello."]}):
        with pytest.raises(WyomingError, match="`text` must be a string"):
            text_field(Event("synthesize", data))


def test_the_voice_by_name_by_language_or_the_default() -> None:
    def choice(data: dict[str, object]) -> VoiceChoice:
        return voice_choice(Event("synthesize", {"text": "x", **data}), "joe")

    assert choice({"voice": {"name": "heart", "speaker": "0"}}) == VoiceChoice("heart")
    assert choice({"voice": {"language": "en_GB"}}) == VoiceChoice("", "en-GB")
    assert choice({"voice": {}}) == VoiceChoice("joe")
    assert choice({}) == VoiceChoice("joe")
    for bad in ({"voice": "heart"}, {"voice": {"name": 3}}, {"voice": {"language": ["en"]}}):
        with pytest.raises(WyomingError) as caught:
            choice(bad)
        assert caught.value.code == "bad_event"


def test_audio_formats_within_bounds_are_taken() -> None:
    fmt = audio_format(Event("audio-start", {"rate": 44100, "width": 4, "channels": 2}))
    assert (fmt.rate, fmt.width, fmt.channels) == (44100, 4, 2)


@pytest.mark.parametrize(
    "data",
    [
        {"rate": 16000, "width": 5, "channels": 1},
        {"rate": 16000, "width": 0, "channels": 1},
        {"rate": 100, "width": 2, "channels": 1},
        {"rate": 10**9, "width": 2, "channels": 1},
        {"rate": 16000, "width": 2, "channels": 0},
        {"rate": 16000, "width": 2, "channels": 64},
        {"rate": "16000", "width": 2, "channels": 1},
        {"rate": 16000.0, "width": 2, "channels": 1},
        {"rate": 16000, "width": True, "channels": 1},
        {"width": 2, "channels": 1},
    ],
)
def test_other_audio_formats_are_bad_audio_format(data: dict[str, object]) -> None:
    with pytest.raises(WyomingError) as caught:
        audio_format(Event("audio-start", data))
    assert caught.value.code == "bad_audio_format"


def worker(name: str, voices: dict[str, str], languages: list[str]) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        address=f"{name}:50051",
        capabilities=WorkerCapabilities(languages=languages),
        default_model=next(iter(voices.values()), "m"),
        resident_models=[],
        available_models=list(voices.values()),
        voices=voices,
        load=WorkerLoad(),
        started_at=0.0,
    )


def test_describe_lists_each_public_voice_once_with_its_languages_and_models() -> None:
    workers = [
        worker("piper-1", {"joe": "en_US-joe-medium"}, ["en-US"]),
        worker("piper-2", {"joe": "en_US-joe-medium"}, ["en-GB"]),
        worker("hibari", {"heart": "hibari-heart"}, ["en-US"]),
        worker("old", {}, ["en-US"]),  # a record from before public voices: nothing to list
    ]
    info = Info.from_event(describe(workers, ASRConfig(), ["en"], "0.1.0").event())
    (tts,) = info.tts
    assert [(v.name, v.languages, v.description) for v in tts.voices] == [
        ("heart", ["en-US"], "hibari-heart"),
        ("joe", ["en-GB", "en-US"], "en_US-joe-medium"),
    ]
    assert tts.supports_synthesize_streaming and tts.installed and tts.version == "0.1.0"
    (asr,) = info.asr
    assert [(m.name, m.languages) for m in asr.models] == [("tiny.en", ["en"])]
    assert not asr.supports_transcript_streaming


def test_an_empty_fleet_still_describes_both_programs() -> None:
    info = describe([], ASRConfig(), ["en"], "0.1.0")
    assert [p.name for p in info.tts] == ["voicefleet"] and info.tts[0].voices == []
    assert [p.name for p in info.asr] == ["voicefleet"]


def test_asr_languages_english_only_or_all_whisper_knows() -> None:
    assert asr_languages(ASRConfig(model="tiny.en"), ["fr", "en"]) == ["en"]
    assert asr_languages(ASRConfig(model="base"), ["fr", "en", "de"]) == ["de", "en", "fr"]
    assert asr_languages(ASRConfig(model_path="/models/x"), ["fr", "en"]) == ["en", "fr"]
