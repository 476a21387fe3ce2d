"""The contract every installed TTS adapter meets behind a real worker, over real gRPC.

Parametrized over the adapters the ``voicefleet.tts_adapters`` entry point finds (mock, piper,
the hibari plug-in, and any adapter installed later): exact 20 ms / 48 kHz / mono s16le frames,
a reply at -16 LUFS under -1 dBTP, PAUSE/RESUME/STOP per session. Each adapter's worker serves
the default model of the configs/worker*.yaml that uses it (or of a file named in
VOICEFLEET_CONTRACT_CONFIGS, for an adapter from outside this repository); one worker process
per adapter for the module. docs/adapters.md explains how to run it for a new adapter.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from tests.integration.conftest import transcribe_reply
from tests.worker_process import WorkerProcess
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import word_error_rate
from voicefleet.audio.loudness import integrated_lufs, true_peak_dbfs
from voicefleet.audio.pcm import s16le_to_float
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE, RESUME, STOP, TTSClient
from voicefleet.tts.adapters import adapter_classes

REPO = Path(__file__).resolve().parents[2]
ADAPTERS = sorted(adapter_classes())
SHORT = "Hello there, this is one short reply."
TWO_SENTENCES = (
    "Good morning, and welcome to the voice fleet demo. "
    "This second sentence makes the reply a little longer."
)
_ids = itertools.count()


def contract_models() -> dict[str, dict[str, Any]]:
    """Adapter name -> the default model of the first worker config that uses it."""
    extra = [Path(p) for p in os.environ.get("VOICEFLEET_CONTRACT_CONFIGS", "").split(os.pathsep)]
    models: dict[str, dict[str, Any]] = {}
    for path in [p for p in extra if p.name] + sorted((REPO / "configs").glob("worker*.yaml")):
        config = yaml.safe_load(path.read_text())
        default = next(m for m in config["models"] if m["id"] == config["default_model"])
        models.setdefault(default["adapter"], default)
    return models


class ContractWorkers:
    """One worker per adapter, started when a test first needs it; all stopped at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.models = contract_models()
        self.started: dict[str, WorkerProcess] = {}

    def get(self, adapter: str) -> WorkerProcess:
        if adapter not in self.started:
            model = self.models.get(adapter)
            if model is None:
                pytest.fail(
                    f"adapter {adapter!r} has no worker config: add configs/worker-{adapter}.yaml "
                    "or name one in VOICEFLEET_CONTRACT_CONFIGS"
                )
            config = {
                "name": f"contract-{adapter}",
                "models": [model],
                "default_model": model["id"],
                "registry": {"redis_url": None},
                "limits": {"max_sessions": 8},
            }
            self.started[adapter] = WorkerProcess(self.tmp, config).start()
        return self.started[adapter]

    def stop(self) -> None:
        for worker in self.started.values():
            worker.stop()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractWorkers]:
    pool = ContractWorkers(tmp_path_factory.mktemp("contract"))
    yield pool
    pool.stop()


@pytest.fixture(params=ADAPTERS)
async def client(workers: ContractWorkers, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async with TTSClient(workers.get(request.param).address) as tts:
        yield tts


def new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns()}"


async def collect(client: TTSClient, session_id: str, text: str) -> list[tts_pb2.AudioFrame]:
    return [frame async for frame in client.synthesize(session_id, [text])]


def spoken_text(text: str, frames: list[tts_pb2.AudioFrame]) -> str:
    """The text the frames say they speak, segment by segment, in order."""
    spans = {f.segment_index: (f.text_start, f.text_end) for f in frames}
    return " ".join(text[start:end] for start, end in (spans[i] for i in sorted(spans)))


class Reader:
    """Reads one call in the background, remembering what arrived."""

    def __init__(self, client: TTSClient, sid: str, text: str) -> None:
        self.frames: list[tts_pb2.AudioFrame] = []
        self.task = asyncio.create_task(self._read(client, sid, text))

    async def _read(self, client: TTSClient, sid: str, text: str) -> None:
        async for frame in client.synthesize(sid, [text]):
            self.frames.append(frame)

    async def until(self, count: int) -> None:
        while len(self.frames) < count:
            assert not self.task.done(), "the stream ended early"
            await asyncio.sleep(0.005)


async def test_frames_are_exact_20ms_48khz_mono_s16le(client: TTSClient) -> None:
    sid = new_id("frames")
    started = await client.start_session(sid)
    fmt = started.format
    assert (fmt.sample_rate, fmt.channels, fmt.frame_samples, fmt.frame_ms) == (48_000, 1, 960, 20)
    assert fmt.encoding == tts_pb2.AUDIO_ENCODING_PCM_S16LE
    frames = await collect(client, sid, SHORT)
    assert len(frames) > 40
    assert {len(f.pcm) for f in frames} == {1920}
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert [f.final for f in frames] == [False] * (len(frames) - 1) + [True]
    assert {(f.sample_rate, f.frame_ms, f.session_id) for f in frames} == {(48_000, 20, sid)}
    assert spoken_text(SHORT, frames) == SHORT
    assert (await client.end_session(sid)).frames_sent == len(frames)


async def test_a_reply_is_at_minus_16_lufs_under_minus_1_dbtp(client: TTSClient) -> None:
    sid = new_id("loud")
    await client.start_session(sid)
    audio = s16le_to_float(b"".join(f.pcm for f in await collect(client, sid, SHORT)))
    assert abs(integrated_lufs(audio, 48_000) + 16.0) <= 1.0
    assert true_peak_dbfs(audio, 48_000) <= -1.0
    await client.end_session(sid)


# Per-session options that make an adapter speak the same samples on every run (Piper samples
# its noise: two runs of one text differed by 10 % in length once).
DETERMINISTIC: dict[str, dict[str, str]] = {"piper": {"noise_scale": "0", "noise_w_scale": "0"}}


async def test_pause_holds_the_session_and_resume_loses_nothing(
    client: TTSClient, request: pytest.FixtureRequest
) -> None:
    options = DETERMINISTIC.get(request.node.callspec.params["client"], {})
    paused, reference = new_id("paused"), new_id("reference")
    for sid in (paused, reference):
        await client.start_session(sid, options=options)
    unpaused = asyncio.create_task(collect(client, reference, TWO_SENTENCES))
    reader = Reader(client, paused, TWO_SENTENCES)
    await reader.until(25)
    ack = await client.control(paused, PAUSE)
    at_ack = len(reader.frames)
    assert ack.state == tts_pb2.SESSION_STATE_PAUSED
    await asyncio.sleep(0.6)
    assert len(reader.frames) - at_ack <= 1, "frames arrived after PAUSE was acknowledged"
    resumed = await client.control(paused, RESUME)
    assert resumed.state == tts_pb2.SESSION_STATE_STREAMING
    await reader.task
    frames, whole = reader.frames, await unpaused
    assert [f.sequence for f in frames] == list(range(len(frames))) and frames[-1].final
    assert spoken_text(TWO_SENTENCES, frames) == TWO_SENTENCES
    # The paused-and-resumed reply is the unpaused one, sample for sample.
    assert len(frames) == len(whole)
    assert b"".join(f.pcm for f in frames) == b"".join(f.pcm for f in whole)
    for sid in (paused, reference):
        await client.end_session(sid)


async def test_stop_and_pause_act_on_their_own_session_only(client: TTSClient) -> None:
    stopped, paused, other = new_id("stopped"), new_id("paused"), new_id("other")
    for sid in (stopped, paused, other):
        await client.start_session(sid)
    long_text = f"{TWO_SENTENCES} {TWO_SENTENCES}"
    to_stop, to_pause = Reader(client, stopped, long_text), Reader(client, paused, long_text)
    await to_stop.until(5)
    await to_pause.until(5)
    ack = await client.control(stopped, STOP)
    assert ack.state == tts_pb2.SESSION_STATE_IDLE
    await to_stop.task  # the stream ends cleanly (OK), without a final frame
    assert len(to_stop.frames) <= ack.frames_sent + 1
    assert not any(f.final for f in to_stop.frames)
    await client.control(paused, PAUSE)
    held = len(to_pause.frames)
    # While one session is paused and another stopped, a third speaks a whole reply...
    assert (await collect(client, other, SHORT))[-1].final
    # ...and so does the stopped one, from sequence 0.
    again = await collect(client, stopped, SHORT)
    assert again[0].sequence == 0 and again[-1].final
    assert len(to_pause.frames) - held <= 1, "the paused session kept sending"
    await client.control(paused, RESUME)
    await to_pause.until(held + 5)
    await client.control(paused, STOP)
    await to_pause.task
    for sid in (stopped, paused, other):
        await client.end_session(sid)


async def test_an_unknown_voice_is_invalid_for_that_session_only(client: TTSClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.start_session(new_id("voice"), voice="no-such-voice")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no-such-voice" in str(refused.value.details())
    sid = new_id("after")
    await client.start_session(sid)
    assert (await collect(client, sid, "Still here."))[-1].final


async def test_hibari_refuses_a_hub_voice_by_name_and_goes_on(workers: ContractWorkers) -> None:
    async with TTSClient(workers.get("hibari").address) as tts:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await tts.start_session(new_id("emma"), voice="emma")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'emma' is not bundled" in str(refused.value.details())
        sid = new_id("heart")
        await tts.start_session(sid, voice="heart", options={"speed": "1.2"})
        assert (await collect(tts, sid, "Still here."))[-1].final


async def test_tiny_en_understands_a_hibari_reply(
    workers: ContractWorkers, recognizer: FasterWhisperRecognizer
) -> None:
    reply = "Hello there, the weather today is sunny and warm."
    async with TTSClient(workers.get("hibari").address) as tts:
        sid = new_id("asr")
        await tts.start_session(sid)
        frames = await collect(tts, sid, reply)
    heard = transcribe_reply(recognizer, b"".join(f.pcm for f in frames))
    assert word_error_rate(reply, heard) <= 0.25, heard
