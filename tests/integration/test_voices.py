"""A fleet of two engines: public voice names route a session to the worker that speaks them,
a worker that offers a voice without holding its model loads it on demand, the router prefers
the worker that has it resident, and a voice nobody offers is a clear error for that turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import PIPER, Stack, open_session, wait_for_event
from tests.worker_process import WorkerProcess
from voicefleet.livekit import FleetTTS
from voicefleet.orchestrator.protocol import AudioEnd, ErrorEvent
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import TTSClient

JOE = {**PIPER, "voices": {"joe": ""}}
HEART = {
    "id": "hibari-heart",
    "adapter": "hibari",
    "languages": ["en-US"],
    "voices": {"heart": "heart"},
}


def piper_only(**extra: Any) -> dict[str, Any]:
    return {"models": [JOE], "default_model": JOE["id"], **extra}


def hibari_only(**extra: Any) -> dict[str, Any]:
    return {"models": [HEART], "default_model": HEART["id"], **extra}


async def capabilities(worker: WorkerProcess) -> tts_pb2.GetCapabilitiesResponse:
    async with TTSClient(worker.address) as client:
        return await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest())


async def speak(stack: Stack, voice: str, text: str = "Hello from the fleet.") -> list[Any]:
    """One typed reply in `voice`; the session's events (the session is closed)."""
    session, events = await open_session(stack.orchestrators[0].ws_url, voice=voice)
    await session.send_text(text, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd | ErrorEvent), 30)
    await session.close()
    return events


@pytest.fixture
def two_engines(stack: Stack) -> Stack:
    stack.worker(name="piper-w", **piper_only())
    stack.worker(name="hibari-w", **hibari_only())
    stack.orchestrator()
    return stack


async def test_each_voice_lands_on_the_worker_that_speaks_it(two_engines: Stack) -> None:
    piper, hibari = two_engines.workers
    caps = await capabilities(hibari)
    assert dict(caps.voices) == {"heart": "hibari-heart"}
    assert dict((await capabilities(piper)).voices) == {"joe": "en_US-joe-medium"}
    for voice, worker in (("heart", hibari), ("joe", piper), ("heart", hibari)):
        before = worker.log().count("started on model")
        events = await speak(two_engines, voice)
        end = [e for e in events if isinstance(e, AudioEnd)]
        assert end and end[0].frames > 20, events
        assert worker.log().count("started on model") == before + 1, (voice, worker.name)
    orchestrator_log = two_engines.orchestrators[0].log()
    assert "on hibari-w, model hibari-heart (resident), voice heart" in orchestrator_log


async def test_a_voice_nobody_offers_is_a_clear_error_and_the_session_goes_on(
    two_engines: Stack,
) -> None:
    session, events = await open_session(two_engines.orchestrators[0].ws_url, voice="emma")
    await session.send_text("Can you hear me?", "say")
    error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 20)
    assert isinstance(error, ErrorEvent) and error.code == "unknown_voice"
    assert "'emma'" in error.message and "heart" in error.message and "joe" in error.message
    await session.send_text("Still there?", "say")
    await wait_for_event(events, lambda e: isinstance(e, ErrorEvent) and e is not error, 20)
    assert not session.finished
    await session.close()
    for worker in two_engines.workers:
        assert "started on model" not in worker.log()


async def test_a_voice_not_resident_is_loaded_on_demand_and_resident_is_preferred(
    stack: Stack,
) -> None:
    # One worker speaks joe by default and can load heart; another holds heart resident.
    both = {"models": [JOE, HEART], "default_model": JOE["id"]}
    loader = stack.worker(name="loader", **both)
    stack.orchestrator()
    caps = await capabilities(loader)
    assert list(caps.resident_models) == ["en_US-joe-medium"]
    assert dict(caps.voices) == {"heart": "hibari-heart", "joe": "en_US-joe-medium"}
    events = await speak(stack, "heart")
    assert any(isinstance(e, AudioEnd) and e.frames > 20 for e in events), events
    assert "hibari-heart" in (await capabilities(loader)).resident_models
    assert "model hibari-heart (loaded on demand), voice heart" in stack.orchestrators[0].log()
    _status, metrics = stack.orchestrators[0].get("/metrics")
    assert 'voicefleet_tts_placements_total{model="loaded_on_demand"} 1.0' in metrics

    # A second worker holds heart resident: with equal load, the router prefers it... until
    # the loader's record says heart is resident there too; so evict it there first.
    holder = stack.worker(name="z-holder", **hibari_only())  # sorts last: no name tie-break
    async with TTSClient(loader.address) as client:
        await client.stub.UnloadModel(tts_pb2.UnloadModelRequest(model_id="hibari-heart"))
    await asyncio.sleep(1.5)  # both records refreshed in the orchestrator's view
    before = holder.log().count("started on model")
    events = await speak(stack, "heart")
    assert any(isinstance(e, AudioEnd) for e in events), events
    assert holder.log().count("started on model") == before + 1


async def test_a_resident_cap_of_one_evicts_the_idle_model_for_the_new_voice(
    stack: Stack,
) -> None:
    capped = {
        "models": [JOE, HEART],
        "default_model": JOE["id"],
        "model_manager": {"resident_cap": 1, "pin_default": False},
    }
    worker = stack.worker(name="capped", **capped)
    stack.orchestrator()
    for voice in ("heart", "joe", "heart"):
        events = await speak(stack, voice)
        assert any(isinstance(e, AudioEnd) and e.frames > 20 for e in events), (voice, events)
    await asyncio.sleep(0.5)
    resident = list((await capabilities(worker)).resident_models)
    assert len(resident) == 1, resident


async def test_fleet_tts_picks_the_engine_by_voice(two_engines: Stack) -> None:
    """The livekit-agents plugin routes by public voice name like the orchestrator does."""
    piper, hibari = two_engines.workers
    for voice, worker, other in (("heart", hibari, piper), ("joe", piper, hibari)):
        before, other_before = (w.log().count("started on model") for w in (worker, other))
        async with FleetTTS(
            redis_url=two_engines.redis_url, key_prefix=two_engines.prefix, voice=voice
        ) as tts:
            frames = [event.frame async for event in tts.synthesize("Hello from the fleet.")]
        assert sum(f.samples_per_channel for f in frames) > 48_000 * 0.5, voice
        assert worker.log().count("started on model") == before + 1, voice
        assert other.log().count("started on model") == other_before, voice
