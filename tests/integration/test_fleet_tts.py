"""FleetTTS in livekit-agents: an AgentSession (text in, a fake LLM) speaks real Piper audio
routed through the Redis registry to a real worker; tiny.en checks what would be heard."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, AgentSession, APIConnectionError, APIConnectOptions, llm
from livekit.agents.voice import io
from livekit.rtc import AudioFrame
from redis.asyncio import Redis

from tests.integration.conftest import piper_worker_config, transcribe_reply
from tests.worker_process import WorkerProcess
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import word_error_rate
from voicefleet.livekit import FleetTTS
from voicefleet.rpc.registry import RegistryKeys, read_fleet
from voicefleet.rpc.tts_client import STOP, Command, TTSClient

REPLY = "Hello there, the weather today is sunny and warm."
LONG_TEXT = (
    "This sentence is long on purpose, so that the stream can be cut off early. "
    "It keeps going with a second sentence about boats, bread and ducks in the park. "
    "And a third one follows, because the listener should never hear it at all."
)
_prefixes = itertools.count()


class ScriptedLLM(llm.LLM):
    """An LLM that streams one fixed reply a few characters at a time, like tokens."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply
        self.requests = 0

    def chat(self, *, chat_ctx: llm.ChatContext, **kwargs: Any) -> llm.LLMStream:
        self.requests += 1
        return _ScriptedStream(
            self, chat_ctx=chat_ctx, tools=[], conn_options=APIConnectOptions(max_retry=0)
        )


class _ScriptedStream(llm.LLMStream):
    async def _run(self) -> None:
        assert isinstance(self._llm, ScriptedLLM)
        text = self._llm.reply
        for start in range(0, len(text), 6):
            await asyncio.sleep(0.005)
            delta = llm.ChoiceDelta(role="assistant", content=text[start : start + 6])
            self._event_ch.send_nowait(llm.ChatChunk(id="scripted", delta=delta))


class CollectingAudioOutput(io.AudioOutput):
    """An audio sink that keeps every frame and 'plays' each segment instantly."""

    def __init__(self) -> None:
        super().__init__(label="collector", capabilities=io.AudioOutputCapabilities(pause=False))
        self.frames: list[AudioFrame] = []
        self._segment_s: float | None = None

    async def capture_frame(self, frame: AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._segment_s is None:
            self._segment_s = 0.0
            self.on_playback_started(created_at=time.time())
        self.frames.append(frame)
        self._segment_s += frame.duration

    def flush(self) -> None:
        super().flush()
        self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if self._segment_s is not None:  # once per segment, however it ends
            self.on_playback_finished(playback_position=self._segment_s, interrupted=interrupted)
            self._segment_s = None

    def pcm(self) -> bytes:
        return b"".join(bytes(frame.data) for frame in self.frames)


@dataclass
class Fleet:
    """One registered Piper worker and how to reach the registry it is in."""

    redis_url: str
    prefix: str
    worker: WorkerProcess

    def tts(self, **options: Any) -> FleetTTS:
        return CountingFleetTTS(redis_url=self.redis_url, key_prefix=self.prefix, **options)


class CountingFleetTTS(FleetTTS):
    """FleetTTS that counts the streams opened, to show which API livekit-agents used."""

    streams = 0

    def stream(self, **kwargs: Any) -> Any:
        CountingFleetTTS.streams += 1
        return super().stream(**kwargs)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Fleet]:
    """A Piper worker registered under a fresh prefix."""
    prefix = f"fleettts{next(_prefixes)}"
    worker = WorkerProcess(
        tmp_path_factory.mktemp("fleet-tts"), piper_worker_config(redis_url, prefix)
    )
    try:
        worker.start()
        asyncio.run(_wait_registered(redis_url, prefix))
        yield Fleet(redis_url, prefix, worker)
    finally:
        worker.stop()


@pytest.fixture
def stop_commands(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Command]]:
    """Every Control command the orchestrator side sends, still delivered to the worker."""
    commands: list[tuple[str, Command]] = []
    control = TTSClient.control

    async def recording_control(self: TTSClient, session_id: str, command: Command) -> Any:
        commands.append((session_id, command))
        return await control(self, session_id, command)

    monkeypatch.setattr(TTSClient, "control", recording_control)
    return commands


def agent_session(fleet_tts: FleetTTS, scripted: ScriptedLLM) -> AgentSession[None]:
    """Text in (no STT, no VAD, no turn detector), audio out to whatever sink is set."""
    return AgentSession(
        llm=scripted,
        tts=fleet_tts,
        vad=None,
        turn_handling={
            "turn_detection": None,
            "interruption": {"resume_false_interruption": False},
        },
    )


async def _wait_registered(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for _ in range(100):
            if await read_fleet(redis, RegistryKeys(prefix)):
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the worker never appeared in the registry")
    finally:
        await redis.aclose()


def assert_fleet_frames(frames: list[AudioFrame]) -> None:
    assert frames
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(48_000, 1)}
    # The worker's 20 ms frames; the emitter holds a 10 ms tail back to mark the last one.
    assert all(f.samples_per_channel <= 2 * 960 for f in frames)


async def test_agent_session_speaks_the_llm_reply_through_the_fleet(
    fleet: Fleet, recognizer: FasterWhisperRecognizer
) -> None:
    fleet_tts = fleet.tts()
    scripted = ScriptedLLM(REPLY)
    session = agent_session(fleet_tts, scripted)
    sink = CollectingAudioOutput()
    session.output.audio = sink
    streams_before = CountingFleetTTS.streams
    try:
        await session.start(Agent(instructions="Answer briefly."), record=False)
        handle = session.generate_reply(user_input="How is the weather?")
        await asyncio.wait_for(handle.wait_for_playout(), 20)
    finally:
        await session.aclose()
        await fleet_tts.aclose()
    assert scripted.requests == 1
    assert CountingFleetTTS.streams == streams_before + 1  # the streaming path, token by token
    assert_fleet_frames(sink.frames)
    seconds = sum(f.duration for f in sink.frames)
    assert 1.5 < seconds < 8.0
    heard = transcribe_reply(recognizer, sink.pcm())
    assert word_error_rate(REPLY, heard) <= 0.25, heard


async def test_interrupting_the_agent_stops_the_worker(
    fleet: Fleet, stop_commands: list[tuple[str, Command]]
) -> None:
    fleet_tts = fleet.tts()
    session = agent_session(fleet_tts, ScriptedLLM(LONG_TEXT))
    sink = CollectingAudioOutput()
    session.output.audio = sink
    try:
        await session.start(Agent(instructions="Talk at length."), record=False)
        handle = session.generate_reply(user_input="Tell me a story.")
        while len(sink.frames) < 10:
            await asyncio.sleep(0.01)
        await session.interrupt()
        await asyncio.wait_for(handle.wait_for_playout(), 5)
    finally:
        await session.aclose()
        await fleet_tts.aclose()
    assert handle.interrupted
    assert [command for _, command in stop_commands] == [STOP]
    frames_sent = await _frames_sent(fleet.worker, stop_commands[0][0])
    # The text is ~9 s of speech; STOP cut it within the worker's small lead.
    assert frames_sent < 100


async def test_synthesize_gives_the_whole_text(
    fleet: Fleet, recognizer: FasterWhisperRecognizer
) -> None:
    # Long enough that one name misheard (Piper samples its noise: "Sam" came back as "tap"
    # once in a full run) is not the whole verdict; a lost segment still fails it.
    text = "Good morning, Sam. The next train to the city leaves at nine."
    async with fleet.tts() as fleet_tts:
        frames = [event.frame async for event in fleet_tts.synthesize(text)]
    assert_fleet_frames(frames)
    heard = transcribe_reply(recognizer, b"".join(bytes(f.data) for f in frames))
    assert word_error_rate(text, heard) <= 0.2, heard


async def test_closing_a_stream_early_stops_the_worker(
    fleet: Fleet, stop_commands: list[tuple[str, Command]]
) -> None:
    async with fleet.tts() as fleet_tts:
        stream = fleet_tts.stream()
        for word in LONG_TEXT.split(" "):
            stream.push_text(word + " ")
        stream.end_input()
        received = 0
        async for _event in stream:
            received += 1
            if received == 10:
                break
        began = time.perf_counter()
        await stream.aclose()
        close_s = time.perf_counter() - began
    assert [command for _, command in stop_commands] == [STOP]
    assert close_s < 1.0
    assert await _frames_sent(fleet.worker, stop_commands[0][0]) < 100


async def test_blank_text_needs_no_worker_and_no_worker_is_an_api_error(fleet: Fleet) -> None:
    async with fleet.tts() as fleet_tts:
        stream = fleet_tts.stream()
        stream.push_text("   ")
        stream.end_input()
        assert [event async for event in stream] == []
        await stream.aclose()
    no_retry = APIConnectOptions(max_retry=0)
    async with FleetTTS(redis_url=fleet.redis_url, key_prefix="nobody-registered") as empty:
        with pytest.raises(APIConnectionError, match="no TTS worker is registered"):
            await empty.synthesize("Hello.", conn_options=no_retry).collect()


async def _frames_sent(worker: WorkerProcess, worker_session: str) -> int:
    """What the worker logged when the session ended (it ends with the stream)."""
    line = await _wait_for_line(worker.log_path, f"session {worker_session} ended after ")
    return int(line.split(" ended after ")[1].split()[0])


async def _wait_for_line(path: Path, needle: str, within_s: float = 5.0) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(path.read_text, errors="replace")
        for line in text.splitlines():
            if needle in line:
                return line
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{needle!r} not in the worker log")
