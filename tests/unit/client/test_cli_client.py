"""The CLI client against a small fake orchestrator on loopback (real WebSocket, real pacing)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import sys
import time
import types
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from tests.local_http import serve
from voicefleet.audio.format import FRAME_BYTES, FRAME_SAMPLES, OUTPUT_SAMPLE_RATE
from voicefleet.client.cli import add_client_parser
from voicefleet.client.wav import WavFormatError, read_wav
from voicefleet.orchestrator.protocol import (
    AgentText,
    AudioEnd,
    AudioStart,
    Bye,
    ErrorEvent,
    Hello,
    Ready,
    ServerMessage,
    SpeakText,
    StateChanged,
    TranscriptEvent,
    TurnMetrics,
    client_message_from_json,
    to_json,
)

FRAMES_PER_REPLY = 12


def _sine(samples: int, rate: int, amplitude: float = 0.3) -> bytes:
    t = np.arange(samples) / rate
    return (np.sin(2 * np.pi * 440 * t) * amplitude * 32767).astype("<i2").tobytes()


@dataclass
class FakeOrchestrator:
    """Follows the protocol; `behaviour` picks how it answers (reply, silent, fatal, ...)."""

    behaviour: str = "reply"
    url: str = ""
    hellos: list[Hello] = field(default_factory=list)
    texts: list[SpeakText] = field(default_factory=list)
    audio_bytes: int = 0
    chunk_times: list[float] = field(default_factory=list)
    byes: int = 0

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        turn, rate, heard_speech, silent = 0, 16_000, False, 0
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                self.audio_bytes += len(msg.data)
                self.chunk_times.append(time.monotonic())
                samples = np.frombuffer(msg.data, "<i2")
                heard_speech, silent = (
                    (True, 0) if samples.any() else (heard_speech, silent + samples.size)
                )
                # The trailing silence ends the utterance, as a VAD would.
                if heard_speech and silent >= 0.2 * rate:
                    heard_speech, turn = False, turn + 1
                    await self._answer(ws, turn)
                continue
            message = client_message_from_json(msg.data)
            if isinstance(message, Hello):
                self.hellos.append(message)
                rate = message.sample_rate
                cancels = message.echo_cancellation in ("auto", "on")
                ready = Ready(session_id="s-1", input_sample_rate=rate, echo_cancellation=cancels)
                await self._send(ws, ready)
                await self._send(ws, StateChanged(state="listening", previous="idle"))
            elif isinstance(message, SpeakText):
                self.texts.append(message)
                turn += 1
                await self._answer(ws, turn)
            elif isinstance(message, Bye):
                self.byes += 1
                await ws.close()
        return ws

    async def _send(self, ws: web.WebSocketResponse, message: ServerMessage) -> None:
        await ws.send_str(to_json(message))

    async def _answer(self, ws: web.WebSocketResponse, turn: int) -> None:
        if self.behaviour == "fatal":
            await self._send(ws, ErrorEvent(code="overloaded", message="no worker", fatal=True))
            await ws.close()
            return
        await self._send(ws, TranscriptEvent(text="hello", final=False, turn=turn))
        await self._send(ws, TranscriptEvent(text="hello there", final=True, turn=turn))
        if self.behaviour == "silent":
            return
        if self.behaviour == "noisy":
            await self._send(ws, ErrorEvent(code="slow_worker", message="retrying"))
        await self._reply(ws, turn)
        if self.behaviour == "two_replies":
            await asyncio.sleep(0.3)
            await self._reply(ws, turn + 1)

    async def _reply(self, ws: web.WebSocketResponse, turn: int) -> None:
        await self._send(ws, AgentText(text="Hi! How can I help?", turn=turn, final=True))
        await self._send(ws, AudioStart(turn=turn))
        frame = _sine(FRAME_SAMPLES, OUTPUT_SAMPLE_RATE)
        for index in range(FRAMES_PER_REPLY):
            if self.behaviour == "noisy" and index < 3:
                await ws.send_bytes(b"\x00" * 1000)
            await ws.send_bytes(frame)
        await self._send(ws, AudioEnd(turn=turn, frames=FRAMES_PER_REPLY))
        await self._send(
            ws,
            TurnMetrics(turn=turn, endpoint_ms=200, asr_ms=312, first_frame_ms=95, ttfa_ms=410),
        )


StartServer = Callable[..., Awaitable[FakeOrchestrator]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    runners: list[web.AppRunner] = []

    async def start(behaviour: str = "reply") -> FakeOrchestrator:
        server = FakeOrchestrator(behaviour)
        app = web.Application()
        app.router.add_get("/ws", server.handle)
        runner, port = await serve(app)
        runners.append(runner)
        server.url = f"ws://127.0.0.1:{port}/ws"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


async def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_client_parser(parser.add_subparsers())
    args = parser.parse_args(["client", *argv])
    # The client runs its own event loop (asyncio.run), so it gets a thread of its own.
    code: int = await asyncio.to_thread(args.run, args)
    return code


def write_test_wav(path: Path, pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(pcm)
    return path


async def test_wav_round_trip_is_paced_and_records_the_reply(
    start_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server()
    rate = 22_050
    wav = write_test_wav(tmp_path / "in.wav", _sine(rate, rate), rate)
    out = tmp_path / "reply.wav"
    argv = ["--url", server.url, "--wav", str(wav), "--tail-silence", "0.3", "--out", str(out)]
    argv += ["--language", "de", "--voice", "v1", "--model", "m1", "--token", "secret"]

    assert await run_cli(*argv) == 0

    # A file hears no reply: the server is told not to cancel echo.
    hello = Hello(sample_rate=rate, language="de", voice="v1", model="m1", token="secret")
    assert server.hellos == [dataclasses.replace(hello, echo_cancellation="off")]
    assert server.audio_bytes == 2 * (rate + round(0.3 * rate))
    # 1.3 s of audio at 20 ms chunks: the first chunk leaves at 20 ms, the last at 1.3 s.
    assert server.chunk_times[-1] - server.chunk_times[0] >= 1.2
    assert server.byes == 1
    with wave.open(str(out), "rb") as reply:
        assert (reply.getframerate(), reply.getnchannels(), reply.getsampwidth()) == (48000, 1, 2)
        assert reply.getnframes() == FRAMES_PER_REPLY * FRAME_SAMPLES
        samples = np.frombuffer(reply.readframes(reply.getnframes()), "<i2")
    assert samples.tobytes() == _sine(FRAME_SAMPLES, OUTPUT_SAMPLE_RATE) * FRAMES_PER_REPLY
    printed = capsys.readouterr().out
    assert "[state] idle -> listening" in printed
    assert "[you…] hello" in printed
    assert "[you] hello there" in printed
    assert "[agent] Hi! How can I help?" in printed
    assert "[metrics] turn 1: endpoint 200 ms, asr 312 ms, first frame 95 ms, ttfa 410 ms" in (
        printed
    )


@pytest.mark.parametrize(("flags", "mode"), [([], "answer"), (["--say"], "say")])
async def test_text_is_sent_with_its_mode(
    start_server: StartServer,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    mode: Literal["answer", "say"],
) -> None:
    server = await start_server()

    assert await run_cli("--url", server.url, "--text", "what time is it", "--quiet", *flags) == 0

    assert server.texts == [SpeakText(text="what time is it", mode=mode)]
    assert server.audio_bytes == 0
    printed = capsys.readouterr().out
    assert "[agent] Hi! How can I help?" in printed
    assert "[you…]" not in printed and "[state]" not in printed, "--quiet hides partials"


async def test_the_token_comes_from_voicefleet_token_unless_given(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_server()
    monkeypatch.setenv("VOICEFLEET_TOKEN", "from-the-environment")

    assert await run_cli("--url", server.url, "--text", "hi", "--quiet") == 0
    assert await run_cli("--url", server.url, "--text", "hi", "--quiet", "--token", "flag") == 0

    assert [hello.token for hello in server.hellos] == ["from-the-environment", "flag"]


@pytest.mark.parametrize(
    ("flags", "mode", "said"),
    [([], "off", "off"), (["--echo-cancellation", "auto"], "auto", "on")],
)
async def test_the_client_asks_for_echo_cancellation_and_says_whether_it_is_on(
    start_server: StartServer,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    mode: str,
    said: str,
) -> None:
    server = await start_server()

    assert await run_cli("--url", server.url, "--text", "hi", *flags) == 0

    assert [hello.echo_cancellation for hello in server.hellos] == [mode]
    assert f"server echo cancellation {said}" in capsys.readouterr().out


async def test_waits_for_a_second_reply_that_follows_quickly(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server("two_replies")
    out = tmp_path / "reply.wav"

    assert await run_cli("--url", server.url, "--text", "hi", "--out", str(out), "--quiet") == 0

    with wave.open(str(out), "rb") as reply:
        assert reply.getnframes() == 2 * FRAMES_PER_REPLY * FRAME_SAMPLES


async def test_bad_frames_and_non_fatal_errors_are_reported_and_skipped(
    start_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server("noisy")
    out = tmp_path / "reply.wav"

    assert await run_cli("--url", server.url, "--text", "hi", "--out", str(out)) == 0

    with wave.open(str(out), "rb") as reply:
        assert reply.getnframes() == FRAMES_PER_REPLY * FRAME_SAMPLES
    errors = capsys.readouterr().err
    assert "[error] slow_worker: retrying" in errors
    assert errors.count(f"binary frame of 1000 bytes (expected {FRAME_BYTES})") == 1
    assert "3 protocol errors in all" in errors


async def test_fatal_server_error_exits_1(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server("fatal")

    assert await run_cli("--url", server.url, "--text", "hi", "--timeout", "5") == 1

    errors = capsys.readouterr().err
    assert "[error] overloaded: no worker (fatal)" in errors
    assert "no reply" not in errors


async def test_no_reply_exits_1_after_the_timeout(
    start_server: StartServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server("silent")
    started = time.monotonic()

    assert await run_cli("--url", server.url, "--text", "hi", "--timeout", "0.5") == 1

    assert 0.5 <= time.monotonic() - started < 3
    assert "no reply within 0.5 s" in capsys.readouterr().err
    assert server.byes == 1


async def test_unreachable_url_exits_1_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/ws"

    assert await run_cli("--url", url, "--text", "hi") == 1

    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and f"cannot connect to {url}" in errors[0]


async def test_missing_wav_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli("--wav", str(tmp_path / "nope.wav")) == 2
    assert "nope.wav: no such file" in capsys.readouterr().err


async def test_say_without_text_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = write_test_wav(tmp_path / "in.wav", _sine(1600, 16_000), 16_000)
    assert await run_cli("--wav", str(wav), "--say") == 2
    assert "--say needs --text" in capsys.readouterr().err


async def test_8_bit_wav_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wav = write_test_wav(tmp_path / "u8.wav", bytes(range(256)) * 10, 16_000, width=1)
    assert await run_cli("--wav", str(wav)) == 2
    assert "8-bit samples; only 16-bit PCM is supported" in capsys.readouterr().err


def test_stereo_is_mixed_down_and_odd_rates_are_refused(tmp_path: Path) -> None:
    stereo = np.array([[1000, 3000], [-200, -400]], dtype="<i2").tobytes()
    audio = read_wav(write_test_wav(tmp_path / "st.wav", stereo, 44_100, channels=2))
    assert audio.sample_rate == 44_100
    assert np.frombuffer(audio.pcm, "<i2").tolist() == [2000, -300]
    with pytest.raises(WavFormatError, match="96000 Hz"):
        read_wav(write_test_wav(tmp_path / "hi.wav", stereo, 96_000, channels=2))


async def test_mic_without_sounddevice_exits_2_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    assert await run_cli("--mic") == 2
    assert "pip install 'voicefleet[mic]'" in capsys.readouterr().err


async def test_mic_without_an_input_device_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class PortAudioError(Exception):
        pass

    def query_devices(kind: str) -> None:
        raise PortAudioError("Error querying device -1")

    fake = types.SimpleNamespace(PortAudioError=PortAudioError, query_devices=query_devices)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    assert await run_cli("--mic") == 2
    assert "no audio input device" in capsys.readouterr().err
