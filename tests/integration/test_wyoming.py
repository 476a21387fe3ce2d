"""The Wyoming endpoint on the real stack (valkey, a Piper worker, an orchestrator with tiny.en),
driven by the `wyoming` library's own client as Home Assistant drives it: describe, synthesize
(whole and streamed), transcribe in several audio formats, bad input answered with `error`
events on a connection that goes on, the allow-list, and `voicefleet wyoming` on its own."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import yaml
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.integration.conftest import PIPER, Stack, orchestrator_config
from tests.speech import piper_speech
from tests.worker_process import free_port
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import word_error_rate
from voicefleet.audio.pcm import s16le_to_float

pytestmark = pytest.mark.slow

JOE = {**PIPER, "voices": {"joe": ""}}
SENTENCE = "The quick brown fox jumps over the lazy dog near the old river bank today."
STREAMED = (
    "We walked along the harbor this morning and watched the boats. "
    "Then we had fresh bread at the little bakery by the square."
)
HEARD = "Please turn on the kitchen lights and set the timer for ten minutes."
MAX_AUDIO_S = 8.0
READ_S = 60.0  # a generous bound on any one reply on a loaded 2-core machine


class Endpoint:
    """The stack's Wyoming endpoint: where it listens, and its orchestrator's log."""

    def __init__(self, stack: Stack, port: int) -> None:
        self.stack = stack
        self.port = port

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port, connect_timeout=10, read_timeout=READ_S)

    def log(self) -> str:
        return self.stack.orchestrators[0].log()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Endpoint]:
    """One Piper worker (voice joe) and an orchestrator with the Wyoming endpoint on."""
    stack = Stack(tmp_path_factory.mktemp("wyoming"), redis_url)
    port = free_port()
    wyoming = {
        "enabled": True,
        "uri": f"tcp://127.0.0.1:{port}",
        "allowed_addresses": ["127.0.0.1"],
        "max_audio_s": MAX_AUDIO_S,
    }
    try:
        stack.worker(models=[JOE], default_model=JOE["id"])
        stack.orchestrator(transport={"wyoming": wyoming})
        yield Endpoint(stack, port)
    finally:
        stack.stop()


async def read_until(client: AsyncTcpClient, last: str) -> list[Event]:
    """Events up to and including the first of type `last`."""
    events: list[Event] = []
    while True:
        event = await client.read_event()
        assert event is not None, f"closed before {last}; got {[e.type for e in events]}"
        events.append(event)
        if event.type == last:
            return events


def reply_audio(events: list[Event]) -> tuple[bytes, int]:
    """The audio of one reply (checked to be one well-formed audio stream) and its rate."""
    kinds = [e.type for e in events if e.type.startswith("audio-")]
    assert kinds[0] == "audio-start" and kinds[-1] == "audio-stop", kinds
    assert kinds.count("audio-start") == 1 and kinds.count("audio-stop") == 1, kinds
    start = AudioStart.from_event(next(e for e in events if AudioStart.is_type(e.type)))
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    assert all((c.rate, c.width, c.channels) == (22050, 2, 1) for c in chunks)
    assert all(len(c.audio) % 2 == 0 for c in chunks)
    return b"".join(c.audio for c in chunks), start.rate


def heard(recognizer: FasterWhisperRecognizer, pcm: bytes, rate: int) -> str:
    audio = soxr.resample(s16le_to_float(pcm), rate, 16_000).astype(np.float32)
    return recognizer.transcribe(audio).text


async def test_describe_lists_the_fleet_voices_and_the_asr_model(endpoint: Endpoint) -> None:
    async with endpoint.client() as client:
        await client.write_event(Describe().event())
        info = Info.from_event((await read_until(client, "info"))[-1])
    (tts,) = info.tts
    assert [voice.name for voice in tts.voices] == ["joe"]
    assert tts.voices[0].languages == ["en-US"]
    assert tts.voices[0].description == "en_US-joe-medium"
    assert tts.supports_synthesize_streaming
    (asr,) = info.asr
    assert [(model.name, model.languages) for model in asr.models] == [("tiny.en", ["en"])]


async def test_synthesize_streams_audio_that_says_the_text(
    endpoint: Endpoint, recognizer: FasterWhisperRecognizer
) -> None:
    async with endpoint.client() as client:
        await client.write_event(Synthesize(SENTENCE, voice=SynthesizeVoice("joe")).event())
        events = await read_until(client, "audio-stop")
    pcm, rate = reply_audio(events)
    assert len(pcm) / 2 / rate > 2.0
    # Frame by frame (20 ms each), not one blob at the end.
    assert sum(AudioChunk.is_type(e.type) for e in events) > 50
    text = heard(recognizer, pcm, rate)
    assert word_error_rate(SENTENCE, text) <= 0.25, text


async def test_a_text_stream_speaks_while_its_text_still_comes(
    endpoint: Endpoint, recognizer: FasterWhisperRecognizer
) -> None:
    first, rest = STREAMED[:70], STREAMED[70:]
    async with endpoint.client() as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice("joe")).event())
        for index in range(0, len(first), 5):
            await client.write_event(SynthesizeChunk(first[index : index + 5]).event())
        # Audio of the first sentence arrives before the text has ended.
        early = await read_until(client, "audio-chunk")
        assert [e.type for e in early] == ["audio-start", "audio-chunk"]
        for index in range(0, len(rest), 5):
            await client.write_event(SynthesizeChunk(rest[index : index + 5]).event())
        # The whole text again, for servers without streaming: ignored inside a stream.
        await client.write_event(Synthesize(STREAMED).event())
        await client.write_event(SynthesizeStop().event())
        events = early + await read_until(client, "synthesize-stopped")
    assert events[-2].type == "audio-stop" and SynthesizeStopped.is_type(events[-1].type)
    pcm, rate = reply_audio(events)
    text = heard(recognizer, pcm, rate)
    assert word_error_rate(STREAMED, text) <= 0.25, text


def formatted(clip: np.ndarray, rate: int, width: int, channels: int) -> bytes:
    """A 16 kHz int16 clip as PCM at `rate`, `width` bytes, `channels` (all the same)."""
    audio = soxr.resample(clip.astype(np.float32) / 32768.0, 16_000, rate)
    audio = np.repeat(audio[:, None], channels, axis=1).reshape(-1)
    if width == 2:
        return np.clip(np.rint(audio * 32767), -32768, 32767).astype("<i2").tobytes()
    return np.clip(np.rint(audio * 2147483647.0), -(2**31), 2**31 - 1).astype("<i4").tobytes()


async def transcribe(client: AsyncTcpClient, pcm: bytes, rate: int, width: int, ch: int) -> str:
    await client.write_event(Transcribe(language="en").event())
    await client.write_event(AudioStart(rate=rate, width=width, channels=ch).event())
    step = rate // 10 * width * ch  # 100 ms chunks
    for index in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=width, channels=ch, audio=pcm[index : index + step])
        await client.write_event(chunk.event())
    await client.write_event(AudioStop().event())
    return Transcript.from_event((await read_until(client, "transcript"))[-1]).text


async def test_transcribe_hears_speech_in_any_format(endpoint: Endpoint) -> None:
    clip = piper_speech(HEARD)
    async with endpoint.client() as client:
        for rate, width, channels in ((16_000, 2, 1), (44_100, 4, 2)):
            pcm = formatted(clip, rate, width, channels)
            text = await transcribe(client, pcm, rate, width, channels)
            assert word_error_rate(HEARD, text) <= 0.25, (rate, width, channels, text)


async def test_an_unknown_voice_is_an_error_and_the_connection_goes_on(
    endpoint: Endpoint,
) -> None:
    async with endpoint.client() as client:
        await client.write_event(Synthesize("Hello.", voice=SynthesizeVoice("emma")).event())
        error = Error.from_event((await read_until(client, "error"))[-1])
        assert error.code == "unknown_voice" and "joe" in error.text
        # The stream form: refused at synthesize-start, its chunks dropped, still stopped.
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice("emma")).event())
        await client.write_event(SynthesizeChunk("Hello there.").event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, "synthesize-stopped")
        assert [e.type for e in events] == ["error", "synthesize-stopped"]
        assert Error.from_event(events[0]).code == "unknown_voice"
        await client.write_event(Synthesize("Hello there.", voice=SynthesizeVoice("joe")).event())
        pcm, _ = reply_audio(await read_until(client, "audio-stop"))
        assert len(pcm) > 0
    # Counted for operators: requests by kind, error events by code.
    _status, metrics = endpoint.stack.orchestrators[0].get("/metrics")
    counted = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("voicefleet_wyoming_")
    }
    assert counted['voicefleet_wyoming_errors_total{code="unknown_voice"}'] >= 2
    assert counted['voicefleet_wyoming_requests_total{request="synthesize"}'] >= 2
    assert counted['voicefleet_wyoming_requests_total{request="synthesize_stream"}'] >= 1


async def test_bad_input_gets_error_events_and_the_connection_goes_on(endpoint: Endpoint) -> None:
    async with endpoint.client() as client:
        writer = client._writer
        assert writer is not None
        writer.write(b"this is not json\n")
        cases: list[tuple[Event, str]] = [
            (Event("synthesize", {"text": 42}), "bad_event"),
            (AudioChunk(16000, 2, 1, b"\0\0" * 160).event(), "audio_start_required"),
            (AudioStop().event(), "audio_start_required"),
            (Event("audio-start", {"rate": 16000, "width": 5, "channels": 1}), "bad_audio_format"),
            (SynthesizeChunk("stray").event(), "no_stream"),
        ]
        for event, _ in cases:
            await client.write_event(event)
        codes = [Error.from_event(e).code for e in [await client.read_event() for _ in range(6)]]
        assert codes == ["bad_event", *(code for _, code in cases)]
        # Audio past max_audio_s: refused once, the rest of that utterance dropped.
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        second = bytes(16000 * 2)
        for _ in range(int(MAX_AUDIO_S) + 2):
            await client.write_event(AudioChunk(16000, 2, 1, second).event())
        await client.write_event(AudioStop().event())
        # Unknown types are dropped, as the protocol asks; describe still answers.
        await client.write_event(Event("not-a-wyoming-event"))
        await client.write_event(Describe().event())
        events = await read_until(client, "info")
        assert [e.type for e in events] == ["error", "info"]
        assert Error.from_event(events[0]).code == "audio_too_long"
        # An event larger than max_event_bytes: error, then the connection is closed unread.
        await client.write_event(AudioChunk(16000, 2, 1, bytes(2 * 1024 * 1024)).event())
        error = await client.read_event()
        assert error is not None and Error.from_event(error).code == "event_too_large"
        assert await client.read_event() is None
    assert "Traceback" not in endpoint.log()


async def test_an_address_not_allowed_is_closed_at_once(endpoint: Endpoint) -> None:
    # The whole 127/8 is loopback: 127.0.0.2 is another client address on this machine.
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", endpoint.port, local_addr=("127.0.0.2", 0)
    )
    try:
        await async_write_event(Describe().event(), writer)
        try:
            answer = await asyncio.wait_for(async_read_event(reader), 10)
        except ConnectionResetError:  # closed with our describe unread
            answer = None
        assert answer is None
    finally:
        writer.close()
    assert "refused 127.0.0.2" in endpoint.log()


class WyomingProcess:
    """`voicefleet wyoming` as a user runs it, on the endpoint's registry; always stopped."""

    def __init__(self, stack: Stack, tmp: Path) -> None:
        self.port = free_port()
        config = orchestrator_config(stack.redis_url, stack.prefix)
        self.config_path = tmp / "wyoming.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "wyoming.log"
        argv = [sys.executable, "-m", "voicefleet", "wyoming", "--config", str(self.config_path)]
        argv += ["--uri", f"tcp://127.0.0.1:{self.port}", "--allow", "127.0.0.0/8"]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def standalone(endpoint: Endpoint, tmp_path: Path) -> Iterator[WyomingProcess]:
    process = WyomingProcess(endpoint.stack, tmp_path)
    yield process
    process.stop()


async def test_voicefleet_wyoming_runs_the_endpoint_alone(standalone: WyomingProcess) -> None:
    info = await describe_when_up(standalone)
    assert [voice.name for voice in info.tts[0].voices] == ["joe"]
    async with AsyncTcpClient("127.0.0.1", standalone.port, read_timeout=READ_S) as client:
        await client.write_event(Synthesize("Hello there.").event())
        pcm, _ = reply_audio(await read_until(client, "audio-stop"))
        assert len(pcm) > 0
    # Stopped mid-reply: the connection is closed and the process exits cleanly.
    async with AsyncTcpClient("127.0.0.1", standalone.port, read_timeout=READ_S) as client:
        await client.write_event(Synthesize(STREAMED).event())
        await read_until(client, "audio-chunk")
        standalone.proc.send_signal(signal.SIGTERM)
        events = []
        while (event := await client.read_event()) is not None:
            events.append(event.type)
        assert "audio-stop" not in events  # cut off, not played out (~8 s of audio)
    assert await asyncio.to_thread(standalone.proc.wait, 20) == 0, standalone.log()
    log = standalone.log()
    assert "Wyoming endpoint shutting down" in log and "Traceback" not in log


async def describe_when_up(process: WyomingProcess) -> Info:
    """Describe, retried until the process listens (the ASR model loads first)."""
    for _ in range(300):
        assert process.proc.poll() is None, process.log()
        try:
            async with AsyncTcpClient("127.0.0.1", process.port, read_timeout=10) as client:
                await client.write_event(Describe().event())
                event: Any = await client.read_event()
                if event is not None and Info.is_type(event.type):
                    return Info.from_event(event)
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"`voicefleet wyoming` never answered describe:\n{process.log()}")


async def test_empty_text_is_an_empty_audio_stream(endpoint: Endpoint) -> None:
    async with endpoint.client() as client:
        await client.write_event(Synthesize("  ").event())
        assert [e.type for e in await read_until(client, "audio-stop")] == [
            "audio-start",
            "audio-stop",
        ]
        # A stream's reply starts before its text: with none, it is at most one silent frame.
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk("").event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, "synthesize-stopped")
        assert events[-2].type == "audio-stop"
        pcm, rate = reply_audio(events[:-1])
        assert len(pcm) <= rate // 50 * 2 and not any(pcm)


async def test_a_worker_killed_mid_reply_fails_over(
    stack: Stack, recognizer: FasterWhisperRecognizer
) -> None:
    workers = [stack.worker(models=[JOE], default_model=JOE["id"]) for _ in range(2)]
    port = free_port()
    orchestrator = stack.orchestrator(
        transport={"wyoming": {"enabled": True, "uri": f"tcp://127.0.0.1:{port}"}}
    )
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=READ_S) as client:
        await client.write_event(Synthesize(STREAMED, voice=SynthesizeVoice("joe")).event())
        events = await read_until(client, "audio-chunk")
        (serving,) = [w for w in workers if f"on {w.name}" in orchestrator.log()]
        serving.kill()
        events += await read_until(client, "audio-stop")
    assert not any(Error.is_type(e.type) for e in events)
    pcm, rate = reply_audio(events)
    text = heard(recognizer, pcm, rate)
    assert word_error_rate(STREAMED, text) <= 0.25, text
    (other,) = [w for w in workers if w is not serving]
    assert f"on {other.name}" in orchestrator.log()
