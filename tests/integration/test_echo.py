"""Server-side echo cancellation with real parts: a speakerphone client whose microphone hears
the reply (Piper, through a real worker) at -12, -6 and 0 dB after 80-200 ms, over room noise.
The reply must play to the end without the agent interrupting itself; a person talking over
it must still stop it."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.integration.conftest import Stack
from tests.speakerphone import Speakerphone
from tests.speech import espeak_speech, trim
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioStart,
    TranscriptEvent,
)

REPLY = (
    "Here is what I found about the weather in Paris today. It will be sunny with a light "
    "breeze, and the temperature will reach twenty degrees in the afternoon."
)
INTERRUPTION = "Sorry but I have another question about the trains to Boston."
REPLY_DBFS = -19.0  # about the level of the worker's -16 LUFS speech, as RMS


async def _wait(phone: Speakerphone, kind: type, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not phone.of_type(kind):
        if time.monotonic() > deadline or phone.session.finished:
            got = [m.type for _, m in phone.events]
            raise AssertionError(f"no {kind.__name__} within {within_s} s; got {got}")
        await asyncio.sleep(0.02)


async def _wait_final(phone: Speakerphone, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not any(isinstance(m, TranscriptEvent) and m.final for _, m in phone.events):
        assert time.monotonic() < deadline, "no final transcript"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("echo_db", "delay_ms"), [(-12.0, 80), (-6.0, 150), (0.0, 200)])
async def test_the_reply_plays_to_the_end_over_its_own_echo(
    shared_stack: Stack, echo_db: float, delay_ms: int
) -> None:
    phone = Speakerphone(shared_stack.orchestrators[0].ws_url, echo_db=echo_db, delay_ms=delay_ms)
    await phone.open()
    try:
        ready = phone.session.result.ready
        assert ready is not None and ready.echo_cancellation
        await asyncio.sleep(0.5)  # the room before anyone speaks
        await phone.session.send_text(REPLY, mode="say")
        await _wait(phone, AudioEnd, 30)
        await asyncio.sleep(1.0)  # the echo's tail, and anything the agent might hear in it
    finally:
        await phone.close()
    assert phone.of_type(AudioStart)
    assert not phone.of_type(AudioPause), (
        f"the agent barged in on its own echo ({phone.underruns} underruns at the client)"
    )
    assert not phone.of_type(AudioCancel)
    assert not phone.of_type(TranscriptEvent), "the agent transcribed its own voice"
    end = phone.of_type(AudioEnd)[0][1]
    assert isinstance(end, AudioEnd) and end.frames > 200  # a reply of over 4 s played whole


async def test_without_the_canceller_the_same_echo_interrupts_the_agent(
    shared_stack: Stack,
) -> None:
    """The control: echo cancellation off, the same 0 dB echo makes the agent stop itself."""
    phone = Speakerphone(
        shared_stack.orchestrators[0].ws_url, echo_db=0.0, delay_ms=150, echo_cancellation="off"
    )
    await phone.open()
    try:
        ready = phone.session.result.ready
        assert ready is not None and not ready.echo_cancellation
        await asyncio.sleep(0.5)
        await phone.session.send_text(REPLY, mode="say")
        await _wait(phone, AudioPause, 15)
    finally:
        await phone.close()


async def test_a_person_talking_over_the_echo_stops_the_reply(shared_stack: Stack) -> None:
    voice = trim(espeak_speech(INTERRUPTION)).astype(np.float64)
    rms = float(np.sqrt(np.mean(voice * voice)))
    voice *= 32768 * 10 ** (REPLY_DBFS / 20) / rms  # as loud as the reply's echo at 0 dB
    phone = Speakerphone(shared_stack.orchestrators[0].ws_url, echo_db=0.0, delay_ms=150)
    await phone.open()
    try:
        await asyncio.sleep(0.5)
        await phone.session.send_text(REPLY, mode="say")
        await _wait(phone, AudioStart, 15)
        await asyncio.sleep(2.0)  # double talk: 2 s into the reply
        phone.say(np.clip(voice, -32768, 32767).astype(np.int16))
        await _wait(phone, AudioCancel, 10)
        await _wait_final(phone, 10)
    finally:
        await phone.close()
    cancelled_at = phone.of_type(AudioCancel)[0][0]
    assert phone.voice_started_at is not None
    took = cancelled_at - phone.voice_started_at
    assert took < 0.7, f"audio_cancel {took * 1000:.0f} ms after the person began"
    assert not phone.of_type(AudioEnd), "the reply should not have finished"
    finals = [m for _, m in phone.of_type(TranscriptEvent) if isinstance(m, TranscriptEvent)]
    words = " ".join(m.text.lower() for m in finals if m.final)
    assert any(word in words for word in ("question", "trains", "boston")), words
