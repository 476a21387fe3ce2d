"""Turn-taking with real parts: a real orchestrator, a real Piper worker, real tiny.en, a real
WebSocket, real audio; an LLM stand-in (a local OpenAI-compatible SSE server) that records the
requests, so the history the LLM is sent can be checked against what the person heard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from tests.integration.conftest import Microphone, Stack, open_session, wait_for_event
from tests.local_http import serve
from tests.speech import piper_speech, trim
from tests.worker_process import free_port
from voicefleet.asr.wer import normalize_words
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioResume,
    AudioStart,
    TranscriptEvent,
    TurnMetrics,
)

STORY = (
    "Once upon a time, there was a small fishing village by the sea. "
    "Every morning the fishermen rowed out before the sun came up. "
    "They sang old songs while they pulled the heavy nets from the water. "
    "In the evening the whole village gathered on the beach to share the catch. "
    "The children ran along the sand and chased the waves until it was dark."
)


class FakeLLM:
    """An OpenAI-compatible chat endpoint: streams a scripted reply, records every request."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.replies: list[str] = []
        self.answers: dict[str, str] = {}  # a word in the user's message -> the reply
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner, _ = await serve(app, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        said = body["messages"][-1]["content"].lower()
        keyed = [reply for word, reply in self.answers.items() if word in said]
        reply = keyed[0] if keyed else self.replies.pop(0) if self.replies else "All right."
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in reply.split(" "):
            delta = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
            await response.write(f"data: {json.dumps(delta)}\n\n".encode())
            await asyncio.sleep(0.005)
        await response.write(b"data: [DONE]\n\n")
        return response

    def history(self, request: int) -> list[tuple[str, str]]:
        """(role, content) of a request's messages, the system prompt left out."""
        messages = self.bodies[request]["messages"]
        return [(m["role"], m["content"].strip()) for m in messages if m["role"] != "system"]


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    fake = FakeLLM()
    await fake.start()
    yield fake
    await fake.stop()


def llm_orchestrator(stack: Stack, llm: FakeLLM, policy: str = "semantic") -> Any:
    return stack.orchestrator(
        responder={"kind": "openai", "openai": {"base_url": llm.url, "model": "fake"}},
        pipeline={"end_of_turn": {"policy": policy}},
    )


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16_000 * seconds), np.int16)


def onset(clip: np.ndarray) -> float:
    """Seconds until the clip is first clearly voiced."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > 1000)
    return float(loud[0]) / 16_000 if loud.size else 0.0


async def test_a_cough_then_real_speech_300_ms_later_cancels_the_reply(shared_stack: Stack) -> None:
    # Synthesized before the microphone runs: the test's loop must not stall while it streams.
    cough = trim(piper_speech("Ha."))[:2560]  # 160 ms: a false alarm
    cough = np.clip(cough.astype(np.int32) * 2, -32768, 32767).astype(np.int16)
    speech = trim(piper_speech("Stop talking now and listen to me please."))
    clip = np.concatenate([cough, silence(0.3), speech])
    orchestrator = shared_stack.orchestrators[0]
    session, events = await open_session(orchestrator.ws_url)
    mic = Microphone(session)
    mic.start()
    await session.send_text(STORY, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 30)
    await asyncio.sleep(0.8)
    queued_at = mic.clock
    mic.play(clip)
    speech_onset = queued_at + (cough.size / 16_000) + 0.3 + onset(speech)
    cancel = await wait_for_event(events, lambda e: isinstance(e, AudioCancel), 10)
    cancelled_at = mic.clock
    await mic.stop()
    await session.close()
    kinds = [type(e) for e in events if isinstance(e, AudioPause | AudioResume | AudioCancel)]
    assert kinds == [AudioPause, AudioResume, AudioPause, AudioCancel], kinds
    assert isinstance(cancel, AudioCancel) and cancel.reason == "barge_in"
    # Stream time at the client (the microphone is paced in real time); one 20 ms chunk slack.
    assert cancelled_at - speech_onset < 0.62, (speech_onset, cancelled_at)


async def test_history_holds_the_whole_utterance_and_what_was_played_not_the_speculation(
    shared_stack: Stack, llm: FakeLLM
) -> None:
    llm.answers = {"paris": "It is sunny and warm in Paris today.", "tomorrow": "It rains."}
    llm.replies = ["This is"] * 5  # what a speculation on the half-utterance would get
    utterance = np.concatenate(
        [
            trim(piper_speech("What is the weather like")),
            silence(0.35),  # a mid-sentence pause: a speculation starts, then is dropped
            trim(piper_speech("in Paris today?")),
            silence(1.0),
        ]
    )
    # The fixed hangover: the pause is shorter than it, so the speculation is dropped.
    orchestrator = llm_orchestrator(shared_stack, llm, policy="silence")
    session, events = await open_session(orchestrator.ws_url)
    mic = Microphone(session)
    mic.start()
    mic.play(utterance)
    end = await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 40)
    assert isinstance(end, AudioEnd)
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.final]
    await session.send_text("And tomorrow?", "answer")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd) and e.turn == 2, 30)
    await mic.stop()
    await session.close()
    assert len(finals) == 1 and "paris" in finals[0].text.lower(), finals
    last = llm.history(len(llm.bodies) - 1)
    assert last[-1] == ("user", "And tomorrow?")
    # Exactly one earlier turn: the whole utterance, and the reply the person heard.
    assert last[:-1] == [
        ("user", finals[0].text.strip()),
        ("assistant", "It is sunny and warm in Paris today."),
    ], last


async def _speak_then_ask_tomorrow(
    stack: Stack, llm: FakeLLM, utterance: np.ndarray
) -> tuple[list[TranscriptEvent], list[Any], list[tuple[str, str]]]:
    """Play `utterance`, wait for the answer to end, type a follow-up; the finals, the
    metrics events and the history the LLM got with the follow-up."""
    orchestrator = llm_orchestrator(stack, llm)
    # A headset: nothing of the reply reaches this microphone. With the server's canceller
    # on, a voice in the first half second of the session's first reply can be dulled while
    # it learns that the room does not echo (docs/protocol.md, "Echo"); these tests are about
    # the end of the turn, with the person resuming just as the reply starts.
    session, events = await open_session(orchestrator.ws_url, echo_cancellation="off")
    mic = Microphone(session)
    mic.start()
    mic.play(utterance)
    await wait_for_event(
        events, lambda e: isinstance(e, AudioEnd) and "paris" in e.text.lower(), 40
    )
    await session.send_text("And tomorrow?", "answer")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd) and "rains" in e.text, 30)
    await mic.stop()
    await session.close()
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.final]
    metrics = [e for e in events if isinstance(e, TurnMetrics)]
    last = llm.history(len(llm.bodies) - 1)
    assert last[-1] == ("user", "And tomorrow?")
    return finals, metrics, last[:-1]


async def test_a_pause_after_an_unfinished_clause_waits_and_gives_one_turn(
    shared_stack: Stack, llm: FakeLLM
) -> None:
    llm.answers = {"seven": "Booked: a table in Paris for two at seven.", "tomorrow": "It rains."}
    llm.replies = ["Sure."] * 5
    utterance = np.concatenate(
        [
            trim(piper_speech("I would like to book a table for")),
            silence(0.7),  # longer than the silence policy's 600 ms
            trim(piper_speech("two people at seven.")),
            silence(2.0),
        ]
    )
    finals, metrics, history = await _speak_then_ask_tomorrow(shared_stack, llm, utterance)
    assert len(finals) == 1, finals
    said = finals[0].text.lower()
    assert "table" in said and "seven" in said, said
    assert history == [
        ("user", finals[0].text.strip()),
        ("assistant", "Booked: a table in Paris for two at seven."),
    ], history
    assert metrics[0].end_of_turn is not None and metrics[0].end_of_turn.startswith("semantic/")


async def test_speech_resuming_after_an_early_end_becomes_one_user_turn(
    shared_stack: Stack, llm: FakeLLM
) -> None:
    llm.answers = {"paris": "It is sunny and warm in Paris today.", "tomorrow": "It rains."}
    llm.replies = ["Let me check the weather for you, one moment please."] * 5
    utterance = np.concatenate(
        [
            trim(piper_speech("What is the weather like?")),  # sounds finished
            silence(0.5),
            trim(piper_speech("In Paris today?")),
            silence(2.0),
        ]
    )
    finals, _, history = await _speak_then_ask_tomorrow(shared_stack, llm, utterance)
    # Whether the first half ended a turn depends on Whisper's punctuation; either way the
    # history holds one user turn with both halves and the answer to it.
    assert 1 <= len(finals) <= 2, finals
    assert len(history) == 2 and history[0][0] == "user", history
    said = history[0][1].lower()
    assert "weather" in said and "paris" in said, history
    assert history[1] == ("assistant", "It is sunny and warm in Paris today."), history


async def test_history_after_a_barge_in_holds_only_the_segments_played(
    shared_stack: Stack, llm: FakeLLM
) -> None:
    llm.replies = [STORY, "Of course."]
    interruption = np.concatenate(
        [trim(piper_speech("Stop, tell me about the boats.")), silence(1)]
    )
    orchestrator = llm_orchestrator(shared_stack, llm)
    session, events = await open_session(orchestrator.ws_url)
    mic = Microphone(session)
    mic.start()
    await session.send_text("Tell me a story.", "answer")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 30)
    await asyncio.sleep(1.0)
    mic.play(interruption)
    await wait_for_event(events, lambda e: isinstance(e, AudioCancel), 10)
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd) and e.turn == 2, 40)
    await mic.stop()
    await session.close()
    second = llm.history(1)
    assert second[0] == ("user", "Tell me a story.")
    assert second[1][0] == "assistant" and second[2][0] == "user"
    heard = normalize_words(second[1][1])
    story = normalize_words(STORY)
    first_segment = normalize_words("Once upon a time,")
    two_segments = normalize_words(
        "Once upon a time, there was a small fishing village by the sea."
    )
    assert story[: len(heard)] == heard, "what was heard is the start of the reply"
    assert len(first_segment) <= len(heard) <= len(two_segments), second[1][1]
