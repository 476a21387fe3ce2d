"""Talking to a real orchestrator: spoken turns, echo replies, barge-in, bad input, limits."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import numpy as np
import pytest

from tests.integration.conftest import (
    Microphone,
    Stack,
    open_session,
    transcribe_reply,
    wait_for_event,
)
from tests.speech import espeak_speech, piper_speech
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import word_error_rate
from voicefleet.client.inputs import PacedAudio
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioResume,
    AudioStart,
    ErrorEvent,
    StateChanged,
    TranscriptEvent,
    TurnMetrics,
)

SENTENCE = "Can you turn on the lights in the kitchen?"


def states(events: list[object]) -> list[str]:
    return [e.state for e in events if isinstance(e, StateChanged)]


@pytest.mark.parametrize("voice", ["piper", "espeak"])
async def test_spoken_turn_is_transcribed_and_echoed_back(
    shared_stack: Stack, recognizer: FasterWhisperRecognizer, voice: str
) -> None:
    orchestrator = shared_stack.orchestrators[0]
    clip = piper_speech(SENTENCE) if voice == "piper" else espeak_speech(SENTENCE)
    session, events = await open_session(orchestrator.ws_url)
    session.mark_input_start()
    await PacedAudio(clip.tobytes(), 16_000, tail_silence=1.2).send(session)
    assert await session.wait_reply(30), session.failure
    await session.close()
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.final]
    assert len(finals) == 1 and word_error_rate(SENTENCE, finals[0].text) <= 0.2, finals
    partials = [e for e in events if isinstance(e, TranscriptEvent) and not e.final]
    assert all(events.index(p) < events.index(finals[0]) for p in partials)
    frames = session.result.frames
    assert frames and {len(f) for f in frames} == {1920}
    end = next(e for e in events if isinstance(e, AudioEnd))
    assert end.frames == len(frames)
    heard = transcribe_reply(recognizer, b"".join(frames))
    # The echo reply speaks what was transcribed. tiny.en, hearing Piper, once merged "on the"
    # into "under" (two errors in nine words): one such confusion passes, three wrong words fail.
    assert word_error_rate(finals[0].text, heard) <= 0.25, heard
    assert states(events)[:4] == ["listening", "waiting_for_input", "speaking", "listening"]
    metrics = next(e for e in events if isinstance(e, TurnMetrics))
    assert metrics.ttfa_ms is not None and 0 < metrics.ttfa_ms < 5000
    assert metrics.asr_ms is not None and metrics.first_frame_ms is not None


async def test_partial_transcripts_arrive_while_the_person_speaks(shared_stack: Stack) -> None:
    text = "Please tell me a long story about the sea, the wind and the old ships in the harbour."
    session, events = await open_session(shared_stack.orchestrators[0].ws_url)
    session.mark_input_start()
    await PacedAudio(piper_speech(text).tobytes(), 16_000, tail_silence=1.2).send(session)
    assert await session.wait_reply(30), session.failure
    await session.close()
    final = next(e for e in events if isinstance(e, TranscriptEvent) and e.final)
    partials = [e for e in events if isinstance(e, TranscriptEvent) and not e.final]
    assert partials, "a 4 s utterance gets at least one partial transcript"
    assert all(p.turn == final.turn and events.index(p) < events.index(final) for p in partials)
    # A partial is a prefix-ish of the final: its first words are the final's first words.
    assert partials[0].text.split()[:2] == final.text.split()[:2]


async def test_barge_in_cancels_the_reply_and_listens(shared_stack: Stack) -> None:
    orchestrator = shared_stack.orchestrators[0]
    session, events = await open_session(orchestrator.ws_url)
    mic = Microphone(session)
    mic.start()
    mic.play(piper_speech("Please tell me a long story about the sea, the wind and the old ships."))
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 30)
    await asyncio.sleep(0.6)
    mic.play(piper_speech("Stop, wait a moment, I have a question."))
    cancel = await wait_for_event(events, lambda e: isinstance(e, AudioCancel), 10)
    assert isinstance(cancel, AudioCancel) and cancel.reason == "barge_in"
    pause_at = next(i for i, e in enumerate(events) if isinstance(e, AudioPause))
    assert pause_at < events.index(cancel)
    assert "barged_in" in states(events)
    await wait_for_event(
        events, lambda e: isinstance(e, TranscriptEvent) and "question" in e.text.lower(), 20
    )
    await mic.stop()
    await session.close()
    seq = states(events)
    barged = seq.index("barged_in")
    assert seq[barged - 1] == "speaking" and seq[barged + 1] == "listening"


async def test_a_short_noise_burst_resumes_the_reply_where_it_paused(shared_stack: Stack) -> None:
    orchestrator = shared_stack.orchestrators[0]
    session, events = await open_session(orchestrator.ws_url)
    mic = Microphone(session)
    mic.start()
    mic.play(piper_speech("One two three four five six seven eight nine ten eleven twelve."))
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 30)
    await asyncio.sleep(0.5)
    cough = piper_speech("Ha.")[:2400]  # 150 ms: enough to trigger the detector, too short to count
    mic.play(np.clip(cough.astype(np.int32) * 2, -32768, 32767).astype(np.int16))
    await wait_for_event(events, lambda e: isinstance(e, AudioResume), 10)
    end = await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 30)
    await mic.stop()
    await session.close()
    assert not any(isinstance(e, AudioCancel) for e in events)
    assert isinstance(end, AudioEnd) and end.frames == len(session.result.frames)
    seq = states(events)
    assert "barged_in" in seq and seq[seq.index("barged_in") + 1] == "speaking"


async def test_text_turn_says_exactly_the_text(
    shared_stack: Stack, recognizer: FasterWhisperRecognizer
) -> None:
    session, _events = await open_session(shared_stack.orchestrators[0].ws_url)
    session.mark_input_start()
    await session.send_text("Good evening, the table is ready.", "say")
    assert await session.wait_reply(30)
    await session.close()
    heard = transcribe_reply(recognizer, b"".join(session.result.frames))
    assert word_error_rate("Good evening, the table is ready.", heard) <= 0.2, heard
    # Paced in real time (120 ms lead), never burst: the frames arrive over the reply's duration.
    times = session.result.frame_times
    assert times[-1] - times[0] >= len(times) * 0.020 - 0.25


async def test_bad_input_gets_error_codes_and_the_session_survives(shared_stack: Stack) -> None:
    orchestrator = shared_stack.orchestrators[0]
    async with aiohttp.ClientSession() as http, http.ws_connect(orchestrator.ws_url) as ws:

        async def expect_error(code: str) -> None:
            while True:
                message = await ws.receive(timeout=10)
                if message.type is aiohttp.WSMsgType.TEXT:
                    data = json.loads(message.data)
                    if data["type"] == "error":
                        assert data["code"] == code, data
                        assert data["message"] and data["fatal"] is False
                        return

        await ws.send_bytes(b"\x00\x00" * 160)
        await expect_error("hello_required")
        await ws.send_str('{"type":"hello","sample_rate":4000}')
        await expect_error("bad_sample_rate")
        await ws.send_str('{"type":"hello","sample_rate":16000}')
        await ws.send_str("{not json")
        await expect_error("bad_json")
        await ws.send_str('{"type":"sing"}')
        await expect_error("unknown_type")
        await ws.send_str('{"type":"text"}')
        await expect_error("bad_message")
        await ws.send_bytes(b"\x01\x02\x03")
        await expect_error("odd_length_pcm")
        await ws.send_bytes(bytes(300_000))
        await expect_error("message_too_large")
        await ws.send_str('{"type":"hello","sample_rate":16000}')
        await expect_error("already_started")
        await ws.send_str('{"type":"text","text":"Still here.","mode":"say"}')
        frames = 0
        while True:
            message = await ws.receive(timeout=20)
            if message.type is aiohttp.WSMsgType.BINARY:
                frames += 1
            elif (
                message.type is aiohttp.WSMsgType.TEXT
                and json.loads(message.data)["type"] == "audio_end"
            ):
                break
        assert frames > 10


async def test_idle_timeout_terminates_the_session(shared_stack: Stack) -> None:
    orchestrator = shared_stack.orchestrator(pipeline={"idle_timeout_s": 1.0})
    session, events = await open_session(orchestrator.ws_url)
    error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 5)
    assert isinstance(error, ErrorEvent) and error.code == "idle_timeout" and error.fatal
    await wait_for_event(
        events, lambda e: isinstance(e, StateChanged) and e.state == "terminated", 2
    )
    await session.close()


async def test_health_readiness_and_metrics(shared_stack: Stack) -> None:
    orchestrator = shared_stack.orchestrators[0]
    assert orchestrator.get("/healthz")[0] == 200
    status, body = orchestrator.get("/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["asr"] is True and ready["workers"] and ready["registry"] == "ok"
    status, text = orchestrator.get("/metrics")
    for name in (
        "voicefleet_sessions_total",
        "voicefleet_state_transitions_total",
        "voicefleet_asr_seconds",
        "voicefleet_time_to_first_audio_seconds",
        "voicefleet_barge_in_seconds",
        "voicefleet_frames_sent_total",
        "voicefleet_playback_underruns_total",
    ):
        assert name in text, name
    # The event loop's lag is measured every 100 ms from the start.
    counts = []
    for _ in range(50):
        found = re.search(r"^voicefleet_event_loop_lag_seconds_count (\S+)$", text, re.M)
        assert found is not None
        counts.append(float(found.group(1)))
        if counts[-1] >= 2:
            break
        await asyncio.sleep(0.1)
        text = orchestrator.get("/metrics")[1]
    assert counts[-1] >= 2, counts


def test_token_endpoint_is_off_without_livekit_keys(shared_stack: Stack) -> None:
    status, body = shared_stack.orchestrators[0].get("/token?room=demo&identity=alice")
    assert status == 404 and json.loads(body)["error"] == "livekit_disabled"
