"""The LiveKit bridge with real livekit.rtc frames, a fake room and a recording session; tokens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace

import numpy as np
import pytest
from livekit import api, rtc

from voicefleet.asr.config import ASRConfig
from voicefleet.asr.service import ASRService
from voicefleet.audio.format import FRAME_BYTES, FRAME_SAMPLES
from voicefleet.fleet import FleetView, Router, RouterConfig
from voicefleet.fleet.pool import WorkerPool
from voicefleet.orchestrator.config import PipelineConfig
from voicefleet.orchestrator.controller import TurnController
from voicefleet.orchestrator.metrics import OrchestratorMetrics
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    Hello,
    ServerMessage,
    StateChanged,
    server_message_from_json,
)
from voicefleet.orchestrator.responder import EchoResponder
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.transports.livekit import (
    LiveKitConfig,
    RealRoom,
    TokenRequestError,
    mint_token,
)
from voicefleet.orchestrator.transports.livekit_bridge import (
    CONTROL_TOPIC,
    EVENTS_TOPIC,
    LiveKitBridge,
    MicrophoneConverter,
    output_frame,
)

RATE = 48_000
SECRET = "a-secret-of-some-length-0123456789"


class FakeRoom:
    """A RoomBoundary whose inputs the test feeds and whose outputs it reads."""

    def __init__(self, frames: list[rtc.AudioFrame] | None = None) -> None:
        self.frames = frames or []
        self.control: asyncio.Queue[bytes] = asyncio.Queue()
        self.left = asyncio.Event()
        self.captured: list[rtc.AudioFrame] = []
        self.data: list[tuple[str, bytes]] = []
        self.cleared = 0
        self.closed_with: str | None = None
        self.microphone_done = asyncio.Event()

    async def audio_frames(self) -> AsyncIterator[rtc.AudioFrame]:
        for frame in self.frames:
            yield frame
        self.microphone_done.set()

    async def data_messages(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.control.get()

    async def wait_participant_left(self) -> None:
        await self.left.wait()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.captured.append(frame)

    def clear_output(self) -> None:
        self.cleared += 1

    async def send_data(self, payload: bytes, topic: str) -> None:
        self.data.append((topic, payload))

    async def close(self, reason: str) -> None:
        self.closed_with = reason


class RecordingSession:
    """The TurnController surface the bridge drives, recording what it receives."""

    def __init__(self, sink: LiveKitBridge) -> None:
        self.sink = sink
        self.closed = asyncio.Event()
        self.started = False
        self.audio = bytearray()
        self.texts: list[tuple[str, str]] = []
        self.interrupts = 0
        self.close_reason: str | None = None

    async def start(self) -> None:
        self.started = True

    async def push_audio(self, pcm: bytes) -> None:
        self.audio += pcm

    async def push_text(self, text: str, mode: str) -> None:
        self.texts.append((text, mode))

    async def interrupt(self) -> None:
        self.interrupts += 1

    async def close(self, reason: str) -> None:
        if self.close_reason is None:  # like TurnController: once, and the sink closes too
            self.close_reason = reason
            await self.sink.close(reason)
            self.closed.set()


def sine(rate: int, seconds: float, hz: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * amplitude * 32767).astype(np.int16)


def frames_of(samples: np.ndarray, rate: int, channels: int, frame_ms: int) -> list[rtc.AudioFrame]:
    """Real rtc.AudioFrames, interleaving the same signal on every channel."""
    per_frame = rate * frame_ms // 1000
    interleaved = np.repeat(samples, channels)
    frames = []
    for start in range(0, samples.size // per_frame * per_frame, per_frame):
        chunk = interleaved[start * channels : (start + per_frame) * channels]
        frames.append(rtc.AudioFrame(chunk.tobytes(), rate, channels, per_frame))
    return frames


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


async def run_until_microphone_done(
    frames: list[rtc.AudioFrame],
) -> tuple[FakeRoom, RecordingSession]:
    room = FakeRoom(frames)
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    session = RecordingSession(bridge)
    runner = asyncio.create_task(bridge.run(session))
    await asyncio.wait_for(room.microphone_done.wait(), 5)
    await asyncio.sleep(0.01)
    room.left.set()
    await asyncio.wait_for(runner, 5)
    return room, session


@pytest.mark.parametrize(
    ("rate", "channels", "frame_ms"),
    [(48_000, 2, 10), (16_000, 1, 30), (44_100, 2, 10), (48_000, 1, 20)],
)
async def test_microphone_frames_become_mono_pcm16_at_the_declared_rate(
    rate: int, channels: int, frame_ms: int
) -> None:
    seconds, hz = 1.2, 440.0
    frames = frames_of(sine(rate, seconds, hz), rate, channels, frame_ms)
    sent_seconds = sum(f.samples_per_channel for f in frames) / rate
    _room, session = await run_until_microphone_done(frames)
    assert session.started
    received = np.frombuffer(bytes(session.audio), dtype="<i2")
    # The same duration at 48 kHz (the resampler's tail is flushed at the end of the track).
    assert abs(received.size / RATE - sent_seconds) < 0.005
    assert abs(dominant_hz(bytes(session.audio), RATE) - hz) < 2.0
    # Mono: the channels were averaged, not summed or interleaved: the level is kept.
    middle = received[RATE // 4 : -RATE // 4].astype(np.float64)
    assert 0.45 < np.max(np.abs(middle)) / 32767 < 0.55


async def test_same_rate_mono_passes_through_bit_exact() -> None:
    samples = sine(RATE, 0.2, 1000.0)
    converter = MicrophoneConverter(RATE)
    out = b"".join(converter.convert(f) for f in frames_of(samples, RATE, 1, 10))
    assert out + converter.flush() == samples.tobytes()


async def test_pipeline_frames_leave_as_960_sample_rtc_frames() -> None:
    room = FakeRoom()
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    tone = sine(RATE, 0.2, 1000.0)
    pcm = tone.tobytes()
    for start in range(0, len(pcm), FRAME_BYTES):
        await bridge.send_audio(pcm[start : start + FRAME_BYTES])
    assert len(room.captured) == tone.size // FRAME_SAMPLES == 10
    for frame in room.captured:
        assert isinstance(frame, rtc.AudioFrame)
        assert (frame.sample_rate, frame.num_channels) == (48_000, 1)
        assert frame.samples_per_channel == 960
        assert abs(frame.duration - 0.020) < 1e-9
    assert b"".join(bytes(f.data) for f in room.captured) == pcm


async def test_uneven_audio_is_reframed_exactly() -> None:
    room = FakeRoom()
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    pcm = sine(RATE, 0.1, 300.0).tobytes()  # 4800 samples = 5 frames, sent in odd pieces
    for start in range(0, len(pcm), 1000):
        await bridge.send_audio(pcm[start : start + 1000])
    assert [f.samples_per_channel for f in room.captured] == [960] * 5
    assert b"".join(bytes(f.data) for f in room.captured) == pcm


async def test_events_go_out_as_json_on_the_data_channel() -> None:
    room = FakeRoom()
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    event = StateChanged(state="listening", previous="idle", reason="hello")
    await bridge.send_event(event)
    assert len(room.data) == 1
    topic, payload = room.data[0]
    assert topic == EVENTS_TOPIC
    assert json.loads(payload)["type"] == "state"
    decoded: ServerMessage = server_message_from_json(payload.decode())
    assert decoded == event
    assert room.cleared == 0


async def test_audio_cancel_clears_the_output_queue() -> None:
    room = FakeRoom()
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    await bridge.send_audio(b"\x01\x00" * 500)  # half a frame waiting for the rest
    await bridge.send_event(AudioCancel(turn=3, reason="barge_in"))
    assert room.cleared == 1
    assert server_message_from_json(room.data[-1][1].decode()) == AudioCancel(3, "barge_in")
    await bridge.send_audio(b"\x00\x00" * FRAME_SAMPLES)
    # The stale half frame was dropped with the queue: the next frame is the new audio only.
    assert len(room.captured) == 1
    assert bytes(room.captured[0].data) == b"\x00\x00" * FRAME_SAMPLES


async def test_participant_leaving_closes_the_session() -> None:
    room = FakeRoom()
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    session = RecordingSession(bridge)
    runner = asyncio.create_task(bridge.run(session))
    await asyncio.sleep(0.01)
    assert not session.closed.is_set()
    room.left.set()
    await asyncio.wait_for(runner, 5)
    assert session.close_reason == "participant_left"
    assert room.closed_with == "participant_left"
    await bridge.send_audio(b"\x00\x00" * FRAME_SAMPLES)  # after close: dropped
    await bridge.send_event(StateChanged(state="terminated", previous="listening"))
    assert room.captured == [] and room.data == []


async def test_control_messages_reach_the_session_and_bye_ends_it() -> None:
    room = FakeRoom()
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    session = RecordingSession(bridge)
    runner = asyncio.create_task(bridge.run(session))
    room.control.put_nowait(b'{"type":"text","text":"hello there","mode":"say"}')
    room.control.put_nowait(b'{"type":"interrupt"}')
    room.control.put_nowait(b'{"type":"nonsense"}')
    room.control.put_nowait(b'{"type":"bye"}')
    await asyncio.wait_for(runner, 5)
    assert session.texts == [("hello there", "say")]
    assert session.interrupts == 1
    assert session.close_reason == "bye"
    errors = [json.loads(p) for t, p in room.data if t == EVENTS_TOPIC]
    assert [e["code"] for e in errors] == ["unknown_type"]


async def test_a_real_voice_session_runs_over_the_bridge() -> None:
    """The real pipeline (no speech, so no ASR or worker is needed) behind the bridge."""
    fleet = FleetView(RouterConfig(redis_url="redis://127.0.0.1:9/0"))  # never contacted
    services = Services(
        config=PipelineConfig(),
        asr=ASRService(ASRConfig()),
        router=Router(fleet),
        pool=WorkerPool(),
        metrics=OrchestratorMetrics(),
    )
    silence = np.zeros(RATE, dtype=np.int16)
    room = FakeRoom(frames_of(silence, RATE, 2, 10))
    bridge = LiveKitBridge(room, Hello(sample_rate=RATE))
    session = TurnController("lk-test", bridge.hello, services, EchoResponder(), bridge, "livekit")
    runner = asyncio.create_task(bridge.run(session))
    await asyncio.wait_for(room.microphone_done.wait(), 5)
    room.left.set()
    await asyncio.wait_for(runner, 5)
    await fleet.close()
    assert session.closed.is_set()
    states = [server_message_from_json(p.decode()) for t, p in room.data if t == EVENTS_TOPIC]
    assert states == [
        StateChanged(state="listening", previous="idle", reason="hello"),
        StateChanged(state="terminated", previous="listening", reason="participant_left"),
    ]
    assert room.closed_with == "participant_left"
    assert room.captured == []


async def test_real_room_wiring_with_real_rtc_objects_and_no_server() -> None:
    """RealRoom over an unconnected rtc.Room and a real rtc.AudioSource: the event filters,
    the output queue and its clearing (a connected room needs a LiveKit server)."""
    room = rtc.Room()
    source = rtc.AudioSource(48_000, 1, queue_size_ms=200)
    alice = SimpleNamespace(identity="alice", track_publications={})
    bob = SimpleNamespace(identity="bob")
    real = RealRoom(room, alice, source)  # type: ignore[arg-type]
    reliable = rtc.DataPacketKind.KIND_RELIABLE
    room.emit("data_received", rtc.DataPacket(b"from bob", reliable, bob, CONTROL_TOPIC))
    room.emit("data_received", rtc.DataPacket(b"other topic", reliable, alice, "chat"))
    room.emit("data_received", rtc.DataPacket(b'{"type":"bye"}', reliable, alice, CONTROL_TOPIC))
    assert await asyncio.wait_for(anext(real.data_messages()), 1) == b'{"type":"bye"}'
    for _ in range(5):
        await real.capture_frame(output_frame(b"\x00\x00" * FRAME_SAMPLES))
    assert source.queued_duration > 0.05
    real.clear_output()
    assert source.queued_duration == 0.0
    room.emit("participant_disconnected", bob)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(real.wait_participant_left(), 0.05)
    room.emit("participant_disconnected", alice)
    await asyncio.wait_for(real.wait_participant_left(), 1)
    await real.close("participant_left")


def test_minted_token_verifies_with_room_and_identity() -> None:
    token = mint_token("devkey", SECRET, "room_1", "user-42", 600)
    claims = api.TokenVerifier("devkey", SECRET).verify(token)
    assert claims.identity == "user-42"
    assert claims.video is not None
    assert claims.video.room == "room_1"
    assert claims.video.room_join is True
    with pytest.raises(Exception, match="Signature"):
        api.TokenVerifier("devkey", "another-secret-0123456789-abcdefgh").verify(token)


def test_minted_token_can_dispatch_the_agent() -> None:
    token = mint_token("devkey", SECRET, "room", "me", 60, agent_name="voicefleet")
    claims = api.TokenVerifier("devkey", SECRET).verify(token)
    assert claims.room_config is not None
    assert [a.agent_name for a in claims.room_config.agents] == ["voicefleet"]


@pytest.mark.parametrize(
    ("room", "identity"),
    [
        ("", "user"),
        ("room", ""),
        ("r" * 65, "user"),
        ("room", "u" * 65),
        ("room/../x", "user"),
        ("room", "user name"),
        ("röom", "user"),
    ],
)
def test_bad_room_or_identity_is_refused(room: str, identity: str) -> None:
    with pytest.raises(TokenRequestError, match=r"^(room|identity) must be"):
        mint_token("devkey", "secret", room, identity, 600)


def test_token_needs_keys_and_a_positive_ttl() -> None:
    with pytest.raises(TokenRequestError, match="ttl"):
        mint_token("devkey", "secret", "room", "user", 0)
    with pytest.raises(TokenRequestError, match="not configured"):
        mint_token("", "", "room", "user", 60)
    assert mint_token("k", SECRET, "r" * 64, "i" * 64, 60).count(".") == 2


def test_config_defaults_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    config = LiveKitConfig()
    assert (config.enabled, config.agent_name, config.token_ttl_s) == (False, "voicefleet", 3600)
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    assert config.credentials() is None
    monkeypatch.setenv("LIVEKIT_API_KEY", "key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "secret")
    assert config.credentials() == ("key", "secret")
    with pytest.raises(ValueError, match="extra"):
        LiveKitConfig.model_validate({"enabled": True, "api_secret": "inline"})
