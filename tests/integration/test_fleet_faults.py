"""Faults of real worker processes under a real orchestrator: a hung worker (SIGSTOP), a worker
that rejects a request, sessions left behind by a failover. Every stack here is its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Stack,
    heard_each_sentence_once_in_order,
    open_session,
    transcribe_reply,
    wait_for_event,
)
from tests.worker_process import WorkerProcess
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioStart,
    ErrorEvent,
    StateChanged,
)
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import TTSClient

REPLY = (
    "First, we walk down to the harbour and look at the boats. "
    "Then we buy some fresh bread at the bakery on the corner. "
    "After that, we sit in the park and watch the ducks on the pond. "
    "Finally, we take the late train back home to the city."
)


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[Stack]:
    built = Stack(tmp_path, redis_url)
    yield built
    for worker in built.workers:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.thaw()  # a stopped process must be able to die
    built.stop()


async def speaking_worker(workers: list[WorkerProcess]) -> WorkerProcess:
    for worker in workers:
        async with TTSClient(worker.address) as client:
            caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest(), timeout=2)
            if caps.load.active_streams:
                return worker
    raise AssertionError("no worker is streaming")


async def sessions_on(worker: WorkerProcess) -> int:
    async with TTSClient(worker.address) as client:
        caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest(), timeout=2)
        return int(caps.active_sessions)


def listening(event: object) -> bool:
    return isinstance(event, StateChanged) and event.state == "listening"


async def test_a_hung_worker_mid_reply_fails_over_and_every_sentence_is_heard_once(
    stack: Stack, recognizer: FasterWhisperRecognizer
) -> None:
    stack.worker()
    stack.worker()
    orchestrator = stack.orchestrator()
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text(REPLY, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    await asyncio.sleep(1.5)
    hung = await speaking_worker(stack.workers)
    hung.freeze()
    frozen_at = time.monotonic()
    end = await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 40)
    assert isinstance(end, AudioEnd)
    await session.close()
    # The stall deadline (1.5 s) moved the reply on; it did not wait for the worker.
    assert time.monotonic() - frozen_at < 25
    assert not [e for e in events if isinstance(e, ErrorEvent)], events
    heard_each_sentence_once_in_order(transcribe_reply(recognizer, b"".join(session.result.frames)))
    _status, metrics = orchestrator.get("/metrics")
    assert "voicefleet_tts_stalls_total 1.0" in metrics
    assert "voicefleet_tts_failovers_total 1.0" in metrics


async def test_interrupt_and_hang_up_never_wait_on_a_hung_worker(stack: Stack) -> None:
    stack.worker()
    orchestrator = stack.orchestrator()
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text(REPLY, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    await asyncio.sleep(0.5)
    stack.workers[0].freeze()
    await asyncio.sleep(0.3)
    asked = time.monotonic()
    await session.interrupt()
    await wait_for_event(events, lambda e: isinstance(e, AudioCancel), 5)
    assert time.monotonic() - asked < 0.5
    await wait_for_event(
        events, lambda e: isinstance(e, StateChanged) and e.state == "listening", 2
    )
    closing = time.monotonic()
    await session.close()
    assert time.monotonic() - closing < 1.0


async def test_a_hung_worker_alone_is_a_clear_error_not_silence(stack: Stack) -> None:
    stack.worker()
    orchestrator = stack.orchestrator()
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text(REPLY, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    stack.workers[0].freeze()
    error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 10)
    assert isinstance(error, ErrorEvent) and error.code == "tts_failed" and not error.fatal
    await wait_for_event(
        events, lambda e: isinstance(e, StateChanged) and e.state == "listening", 5
    )
    await session.close()


async def test_a_rejected_request_fails_that_turn_only(stack: Stack) -> None:
    stack.worker(limits={"max_chunk_chars": 100})
    orchestrator = stack.orchestrator()
    first, first_events = await open_session(orchestrator.ws_url)
    await first.send_text("This reply is far longer than the worker accepts. " * 4, "say")
    error = await wait_for_event(first_events, lambda e: isinstance(e, ErrorEvent), 15)
    assert isinstance(error, ErrorEvent) and error.code == "tts_rejected", first_events
    status, body = orchestrator.get("/readyz")
    assert status == 200, body  # the worker was not cooled down
    second, second_events = await open_session(orchestrator.ws_url)
    await second.send_text("Short and fine.", "say")
    await wait_for_event(second_events, lambda e: isinstance(e, AudioEnd), 20)
    assert second.result.frames
    await first.send_text("Still here.", "say")
    await wait_for_event(first_events, lambda e: isinstance(e, AudioEnd), 20)
    for session in (first, second):
        await session.close()
    assert json.loads(body)["workers"]


async def test_the_failed_workers_session_is_ended_once_it_answers_again(stack: Stack) -> None:
    stack.worker()
    stack.worker()
    orchestrator = stack.orchestrator()
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text(REPLY, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    await asyncio.sleep(1.0)
    hung = await speaking_worker(stack.workers)
    hung.freeze()
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 40)
    hung.thaw()
    # The session stays open, so only the fleet client's clean-up can end the worker session.
    deadline = time.monotonic() + 20
    while await sessions_on(hung) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert await sessions_on(hung) == 0
    await session.close()


async def test_the_orchestrator_dials_workers_with_their_token(stack: Stack) -> None:
    token = "fleet-token-0123456789abcdef"
    stack.worker(auth={"token": token})
    without = stack.orchestrator(require_ready=False)
    session, events = await open_session(without.ws_url)
    await session.send_text("Hello there.", "say")
    error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 15)
    assert isinstance(error, ErrorEvent) and error.code == "tts_failed"
    assert "UNAUTHENTICATED" in error.message and token not in error.message
    await session.close()
    with_token = stack.orchestrator(router={"worker": {"token": token}})
    session, events = await open_session(with_token.ws_url)
    await session.send_text("Hello there.", "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 20)
    assert session.result.frames
    await session.close()
    assert token not in with_token.log()
