"""The OpenAI-compatible API's decisions without a server: request checks, name resolution,
error shapes, subtitle timing."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from voicefleet.asr.segments import Segment
from voicefleet.fleet.errors import NoWorkerAvailable, UnknownVoice
from voicefleet.fleet.speech import SpeechFailed
from voicefleet.fleet.view import FleetView
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.transports.admission import ClientAddress, ConnectionRate
from voicefleet.orchestrator.transports.openai.config import OpenAIApiConfig
from voicefleet.orchestrator.transports.openai.context import OpenAIApi
from voicefleet.orchestrator.transports.openai.errors import ApiError
from voicefleet.orchestrator.transports.openai.speech import _refusal, parse_speech
from voicefleet.orchestrator.transports.openai.transcription import (
    TranscriptionRequest,
    check_form,
    subtitles,
)
from voicefleet.rpc.registry import WorkerCapabilities, WorkerLoad, WorkerRecord


def record(name: str, models: list[str], voices: dict[str, str]) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        address="127.0.0.1:1",
        capabilities=WorkerCapabilities(languages=["en-US"], streaming=True),
        default_model=models[0],
        resident_models=models,
        available_models=models,
        voices=voices,
        load=WorkerLoad(active_sessions=0, max_sessions=8, queue_depth=0),
        started_at=0,
        updated_at=time.time(),
    )


class _Fleet:
    def __init__(self) -> None:
        self.workers = {
            "piper": record("piper", ["en_US-joe-medium"], {"joe": "en_US-joe-medium"}),
            "hibari": record("hibari", ["hibari-heart"], {"heart": "hibari-heart"}),
        }


class _Asr:
    class config:
        model = "tiny.en"
        model_path = None


def api() -> OpenAIApi:
    services = cast(Services, type("S", (), {"asr": _Asr()})())
    return OpenAIApi(
        OpenAIApiConfig(max_input_chars=50),
        services,
        cast(FleetView, _Fleet()),
        None,
        ClientAddress([]),
        ConnectionRate(0),
    )


def speech(**fields: Any) -> dict[str, Any]:
    return {"model": "tts-1", "voice": "alloy", "input": "Hello there.", **fields}


def test_openai_names_resolve_to_fleet_names() -> None:
    wanted = parse_speech(api(), speech())
    assert (wanted.voice, wanted.model, wanted.response_format, wanted.speed) == (
        "joe",
        "",
        "mp3",
        1.0,
    )
    assert parse_speech(api(), speech(voice="nova")).voice == "heart"
    direct = parse_speech(api(), speech(model="hibari-heart", voice="heart", speed=1.5))
    assert (direct.model, direct.voice, direct.speed) == ("hibari-heart", "heart", 1.5)
    assert parse_speech(api(), speech(voice={"id": "joe"}, stream_format="sse")).sse


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"input": ""}, 400, "input"),
        ({"input": "x" * 51}, 400, "input"),
        ({"input": 3}, 400, "input"),
        ({"model": ""}, 400, "model"),
        ({"model": "tts-9"}, 404, "model"),
        ({"voice": ""}, 400, "voice"),
        ({"response_format": "ogg"}, 400, "response_format"),
        ({"speed": 0.1}, 400, "speed"),
        ({"speed": "fast"}, 400, "speed"),
        ({"speed": True}, 400, "speed"),
        ({"stream_format": "chunks"}, 400, "stream_format"),
    ],
)
def test_bad_speech_requests(fields: dict[str, Any], status: int, param: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_speech(api(), speech(**fields))
    assert (refused.value.status, refused.value.param) == (status, param)
    body = refused.value.body()["error"]
    assert isinstance(body, dict) and body["message"] and body["type"]


def test_routing_failures_map_to_statuses() -> None:
    unknown = SpeechFailed.unroutable(UnknownVoice("no voice 'x'"))
    assert _refusal(unknown).status == 400
    assert _refusal(unknown).code == "unknown_voice"
    assert _refusal(SpeechFailed("tts_rejected", "speed out of range")).status == 400
    nobody = SpeechFailed.unroutable(NoWorkerAvailable("no TTS worker is registered"))
    assert _refusal(nobody).status == 503
    assert _refusal(SpeechFailed("tts_failed", "every worker failed")).status == 503


def test_error_response_has_openai_shape_and_retry_hint() -> None:
    response = ApiError(429, "slow down", code="rate_limit_exceeded").response()
    assert response.status == 429 and response.headers["Retry-After"] == "1"
    unauthorized = ApiError(401, "wrong token", code="invalid_api_key").response()
    assert "Bearer" in unauthorized.headers["WWW-Authenticate"]


def form(**fields: Any) -> TranscriptionRequest:
    return TranscriptionRequest(**{"audio": b"RIFF", "model": "whisper-1", **fields})


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"audio": b""}, 400, "file"),
        ({"model": ""}, 400, "model"),
        ({"model": "base.en"}, 404, "model"),
        ({"response_format": "xml"}, 400, "response_format"),
        ({"granularities": {"char"}}, 400, "timestamp_granularities"),
        ({"temperature": 2.0}, 400, "temperature"),
        ({"stream": True, "response_format": "srt"}, 400, "stream"),
    ],
)
def test_bad_transcription_forms(fields: dict[str, Any], status: int, param: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_form(api(), form(**fields))
    assert (refused.value.status, refused.value.param) == (status, param)


def test_the_configured_asr_model_is_accepted_by_name() -> None:
    assert check_form(api(), form(model="tiny.en")) is None  # raises ApiError when refused
    assert check_form(api(), form(stream=True, response_format="text")) is None
    with pytest.raises(ApiError) as refused:  # a neighbouring name is not the model
        check_form(api(), form(model="tiny"))
    assert refused.value.status == 404


def test_subtitle_cues_and_clock() -> None:
    segments = [Segment(0, 0.0, 1.5, "Hello."), Segment(1, 3661.25, 3662.0, "Later.")]
    srt = subtitles(segments, ",")
    assert srt.splitlines()[:3] == ["1", "00:00:00,000 --> 00:00:01,500", "Hello."]
    assert "01:01:01.250 --> 01:01:02.000" in subtitles(segments, ".")
