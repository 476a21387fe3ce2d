"""`voicefleet fleet` as a real subprocess against real valkey and real worker processes: a
Piper worker (voice joe) and a mock worker (voice beep, a second model), both with a token."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import PIPER, transcribe_reply
from tests.worker_process import WorkerProcess, free_port
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import word_error_rate
from voicefleet.fleet.cli import CLEAR
from voicefleet.rpc.registry import DrainRequest, RegistryKeys, WorkerRecord, request_drain
from voicefleet.rpc.tts_client import TTSClient

VOICEFLEET = str(Path(sys.executable).parent / "voicefleet")
TOKEN = "fleet-cli-token-" + "f" * 24
MOCK_MODELS = [
    {"id": "mock", "adapter": "mock", "languages": ["en-US"], "voices": {"beep": ""}},
    {"id": "mock2", "adapter": "mock", "languages": ["en-US"]},
]
# About 6 s of mock speech: the stream outlives the drain request.
LONG_REPLY = " ".join(["This reply keeps speaking for a few seconds."] * 2)
SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river bank."


@dataclass
class Fleet:
    redis_url: str
    prefix: str
    piper: WorkerProcess
    mock: WorkerProcess

    def args(self) -> list[str]:
        return ["--redis-url", self.redis_url, "--prefix", self.prefix]


@dataclass
class Run:
    code: int
    out: str
    err: str


def registry(redis_url: str, prefix: str) -> dict[str, Any]:
    return {"redis_url": redis_url, "key_prefix": prefix, "heartbeat_s": 0.3, "record_ttl_s": 2.0}


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without the settings the CLI reads, plus `extra`."""
    skip = ("REDIS_URL", "VOICEFLEET_WORKER_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    return {**env, **extra}


async def fleet(*args: str, token: str | None = None, **env: str) -> Run:
    """Run `voicefleet fleet ARGS` (token through VOICEFLEET_WORKER_TOKEN)."""
    if token is not None:
        env["VOICEFLEET_WORKER_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        VOICEFLEET,
        "fleet",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(**env),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def assert_one_line_error(run: Run, *needles: str) -> None:
    assert run.code != 0, run
    assert "Traceback" not in run.err, run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def shared_fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleetcli")
    prefix = f"fleetcli{free_port()}"
    common = {"auth": {"token": TOKEN}, "registry": registry(redis_url, prefix)}
    piper = WorkerProcess(
        tmp,
        {
            "name": "cli-piper",
            "models": [{**PIPER, "voices": {"joe": ""}}],
            "default_model": PIPER["id"],
            **common,
        },
    )
    mock = WorkerProcess(
        tmp,
        {
            "name": "cli-mock",
            "models": MOCK_MODELS,
            "default_model": "mock",
            **common,
        },
    )
    try:
        piper.start()
        mock.start()
        yield Fleet(redis_url, prefix, piper, mock)
    finally:
        piper.stop()
        mock.stop()


async def wait_registered(fleet: Fleet, *names: str) -> None:
    async with asyncio.timeout(10):
        while True:
            run = await fleet_status_json(fleet)
            if {w["name"] for w in run["workers"]} >= set(names):
                return
            await asyncio.sleep(0.2)


async def fleet_status_json(shared: Fleet) -> dict[str, Any]:
    run = await fleet("status", "--json", *shared.args())
    result: dict[str, Any] = json.loads(run.out)
    return result


async def resident(worker: WorkerProcess) -> list[str]:
    async with TTSClient(worker.address, token=TOKEN) as client:
        return list((await client.get_capabilities()).resident_models)


async def test_status_table_and_json_list_workers_with_voices_models_and_skipped_records(
    shared_fleet: Fleet, redis: Redis
) -> None:
    await wait_registered(shared_fleet, "cli-piper", "cli-mock")
    keys = RegistryKeys(shared_fleet.prefix)
    await redis.set(keys.worker("broken"), b"{not json")
    await redis.sadd(keys.index, "broken")
    try:
        table = await fleet("status", *shared_fleet.args())
        data = await fleet_status_json(shared_fleet)
    finally:
        await redis.delete(keys.worker("broken"))
        await redis.srem(keys.index, "broken")

    assert table.code == 0, table
    lines = table.out.splitlines()
    assert lines[0].split()[:2] == ["WORKER", "ADDRESS"]
    mock_row = next(line for line in lines if line.startswith("cli-mock "))
    piper_row = next(line for line in lines if line.startswith("cli-piper "))
    assert shared_fleet.mock.address in mock_row and "mock*, mock2" in mock_row
    assert " beep " in mock_row and "0/64" in mock_row
    assert f"{PIPER['id']}*" in piper_row and " joe " in piper_row
    assert "broken: not_json: not JSON" in table.out

    workers = {w["name"]: w for w in data["workers"]}
    assert set(workers) == {"cli-piper", "cli-mock"}
    assert workers["cli-mock"]["voices"] == {"beep": "mock"}
    assert workers["cli-mock"]["available_models"] == ["mock", "mock2"]
    assert workers["cli-piper"]["resident_models"] == [PIPER["id"]]
    assert workers["cli-piper"]["address"] == shared_fleet.piper.address
    assert 0 <= workers["cli-mock"]["heartbeat_age_s"] < 2.0
    assert workers["cli-mock"]["drain_requested"] is False
    assert [s["name"] for s in data["skipped"]] == ["broken"]
    assert data["skipped"][0]["reason"] == "not_json"


async def watch(*args: str) -> str:
    """`status --watch 0.2` until it has drawn four screens, then Ctrl-C: what it printed."""
    proc = await asyncio.create_subprocess_exec(
        VOICEFLEET, "fleet", "status", "--watch", "0.2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    async with asyncio.timeout(30):  # however slow the start
        while seen.count(CLEAR.encode()) < 4:
            seen += await proc.stdout.read(4096) or b""
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    return (seen + out).decode()


async def test_status_watch_refreshes_until_ctrl_c(shared_fleet: Fleet) -> None:
    screens = (await watch(*shared_fleet.args())).split(CLEAR)[1:]

    assert len(screens) >= 4
    assert all("cli-mock" in screen and "cli-piper" in screen for screen in screens[:4])
    assert "every 0.2 s" in screens[0]


async def test_status_watch_shows_an_unreachable_registry_and_goes_on() -> None:
    screens = (await watch("--redis-url", f"redis://127.0.0.1:{free_port()}/0")).split(CLEAR)

    assert sum("cannot reach the registry" in screen for screen in screens) >= 4


async def test_registry_and_token_come_from_the_orchestrator_config_and_redis_url(
    shared_fleet: Fleet, tmp_path: Path
) -> None:
    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        f"router: {{key_prefix: {shared_fleet.prefix}, worker: {{token: {TOKEN}}}}}\n"
    )

    run = await fleet(
        "load",
        "mock",
        "--on",
        "cli-mock",
        "--config",
        str(config),
        REDIS_URL=shared_fleet.redis_url,
    )

    assert run.code == 0, run
    assert run.out.strip() == "cli-mock: mock was already resident"


async def test_load_and_unload_change_resident_models(shared_fleet: Fleet) -> None:
    assert "mock2" not in await resident(shared_fleet.mock)

    loaded = await fleet("load", "mock2", "--on", "cli-mock", *shared_fleet.args(), token=TOKEN)
    assert loaded.code == 0, loaded
    assert loaded.out.startswith("cli-mock: loaded mock2")
    assert "mock2" in await resident(shared_fleet.mock)
    again = await fleet("load", "mock2", "--all", *shared_fleet.args(), token=TOKEN)
    assert again.out.strip() == "cli-mock: mock2 was already resident"  # piper lacks it

    unloaded = await fleet(
        "unload", "mock2", "--all", *shared_fleet.args(), "--token", TOKEN, token="wrong" * 4
    )
    assert unloaded.code == 0, unloaded
    assert unloaded.out.strip() == "cli-mock: unloaded mock2"
    assert "mock2" not in await resident(shared_fleet.mock)


async def test_a_failing_worker_gives_a_non_zero_exit_and_the_others_are_still_done(
    shared_fleet: Fleet,
) -> None:
    run = await fleet(
        "load", "mock2", "--on", "cli-piper", "--on", "cli-mock", *shared_fleet.args(), token=TOKEN
    )
    try:
        assert run.code == 1
        assert run.out.startswith("cli-mock: loaded mock2")
        assert "cli-piper: NOT_FOUND" in run.err and "mock2" in run.err
        assert "1 of 2 worker(s) failed" in run.err
        assert "Traceback" not in run.err
        assert "mock2" in await resident(shared_fleet.mock)
    finally:
        async with TTSClient(shared_fleet.mock.address, token=TOKEN) as client:
            await client.unload_model("mock2")


async def test_a_wrong_token_is_one_clear_error(shared_fleet: Fleet) -> None:
    run = await fleet("load", "mock2", "--on", "cli-mock", *shared_fleet.args(), token="x" * 20)

    assert_one_line_error(run, "cli-mock: UNAUTHENTICATED", "invalid token")
    assert run.code == 1
    assert "mock2" not in await resident(shared_fleet.mock)


async def test_say_writes_a_wav_that_tiny_en_transcribes(
    shared_fleet: Fleet, recognizer: FasterWhisperRecognizer, tmp_path: Path
) -> None:
    out = tmp_path / "say.wav"

    run = await fleet(
        "say", "--voice", "joe", SENTENCE, "--out", str(out), *shared_fleet.args(), token=TOKEN
    )

    assert run.code == 0, run
    assert "spoken by cli-piper" in run.out and "first audio after" in run.out
    with wave.open(str(out), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (
            48_000,
            1,
            2,
        )
        pcm = reader.readframes(reader.getnframes())
    assert len(pcm) / 2 / 48_000 > 2.0
    heard = transcribe_reply(recognizer, pcm)
    assert word_error_rate(SENTENCE, heard) <= 0.25, heard


async def test_say_at_another_rate(shared_fleet: Fleet, tmp_path: Path) -> None:
    out = tmp_path / "beep.wav"

    run = await fleet(
        "say", "Short and sweet.", "--voice", "beep", "--rate", "16000", "--out", str(out),
        *shared_fleet.args(), token=TOKEN,
    )  # fmt: skip

    assert run.code == 0, run
    assert "spoken by cli-mock" in run.out
    with wave.open(str(out), "rb") as reader:
        assert reader.getframerate() == 16_000
        seconds = reader.getnframes() / 16_000
    assert f"{seconds:.2f} s at 16000 Hz" in run.out
    assert seconds > 0.5


async def test_errors_are_one_line_and_non_zero(shared_fleet: Fleet, tmp_path: Path) -> None:
    args = shared_fleet.args()
    unknown_voice = await fleet(
        "say", "Hello there.", "--voice", "nobody", "--out", str(tmp_path / "x.wav"), *args,
        token=TOKEN,
    )  # fmt: skip
    assert_one_line_error(unknown_voice, "voice 'nobody'", "beep", "joe")
    assert not (tmp_path / "x.wav").exists()

    bad_token = await fleet(
        "say", "Hello.", "--voice", "beep", "--out", str(tmp_path / "x.wav"), *args, token="y" * 20
    )
    assert_one_line_error(bad_token, "cli-mock", "UNAUTHENTICATED")
    assert not (tmp_path / "x.wav").exists()

    for action in (["drain", "ghost"], ["load", "mock2", "--on", "ghost"]):
        unknown = await fleet(*action, *args, token=TOKEN)
        assert_one_line_error(unknown, "no worker named 'ghost'", "cli-mock", "cli-piper")

    nobody = await fleet("load", "mock9", "--all", *args, token=TOKEN)
    assert_one_line_error(nobody, "no registered worker offers model 'mock9'", "mock2")

    down = f"redis://127.0.0.1:{free_port()}/0"
    for action in (["status"], ["drain", "cli-mock"], ["say", "Hi.", "--out", "y.wav"]):
        run = await fleet(*action, "--redis-url", down, "--prefix", shared_fleet.prefix)
        assert_one_line_error(run, "registry", "127.0.0.1")

    empty = await fleet("status", "--redis-url", shared_fleet.redis_url, "--prefix", "nobody")
    assert_one_line_error(empty, "no workers registered")
    assert empty.out == ""
    no_workers = await fleet("load", "mock", "--all", "--prefix", "nobody", *args[:2])
    assert_one_line_error(no_workers, "no workers registered")

    bad_config = tmp_path / "orchestrator.yaml"
    bad_config.write_text("router: {redis_url: http://nope}\n")
    config = await fleet("status", "--config", str(bad_config))
    assert_one_line_error(config, "redis_url")
    assert config.code == 2


async def test_drain_lets_the_running_stream_finish_then_the_worker_exits(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    prefix = f"fleetdrain{free_port()}"
    worker = WorkerProcess(
        tmp_path,
        {
            "name": "drain-me",
            "models": MOCK_MODELS,
            "default_model": "mock",
            "auth": {"token": TOKEN},
            "drain_s": 20,
            "registry": registry(redis_url, prefix),
        },
    ).start()
    keys = RegistryKeys(prefix)
    try:
        async with asyncio.timeout(5):
            while not await redis.exists(keys.worker("drain-me")):
                await asyncio.sleep(0.05)
        async with TTSClient(worker.address, token=TOKEN) as client:
            await client.start_session("running")
            frames = aiter(client.synthesize("running", [LONG_REPLY]))
            received = [await anext(frames)]

            run = await fleet("drain", "drain-me", "--redis-url", redis_url, "--prefix", prefix)

            assert run.code == 0, run
            assert run.out.startswith(f"drain-me ({worker.address}) is draining")
            assert not await redis.exists(keys.worker("drain-me"))
            assert not await redis.exists(keys.drain("drain-me"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.start_session("late")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert worker.proc is not None and worker.proc.poll() is None  # still streaming
            received += [frame async for frame in frames]
            assert received[-1].final and len(received) > 100
            assert [f.sequence for f in received] == list(range(len(received)))
        assert worker.proc.wait(15) == 0
        assert "drain requested through the registry" in worker.log()
    finally:
        worker.stop()


async def test_a_drain_request_for_another_run_is_ignored_and_an_untaken_one_withdrawn(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    prefix = f"fleetstale{free_port()}"
    keys = RegistryKeys(prefix)
    worker = WorkerProcess(
        tmp_path,
        {"name": "keep-me", "models": MOCK_MODELS[:1], "default_model": "mock",
         "registry": registry(redis_url, prefix)},
    ).start()  # fmt: skip
    try:
        await request_drain(redis, keys, "keep-me", DrainRequest(started_at=1.0), ttl_s=30)
        async with asyncio.timeout(5):
            while await redis.exists(keys.drain("keep-me")):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert worker.proc is not None and worker.proc.poll() is None
        assert await redis.exists(keys.worker("keep-me"))
        assert "ignoring a drain request for an earlier run" in worker.log()
    finally:
        worker.stop()

    # A record with no worker behind it (a frozen heartbeat, say): the request is not taken.
    ghost = WorkerRecord.model_validate_json(await redis.get(keys.worker("keep-me")) or b"{}")
    await redis.set(keys.worker("keep-me"), ghost.model_dump_json(), ex=30)
    began = time.monotonic()
    run = await fleet(
        "drain", "keep-me", "--wait", "1", "--redis-url", redis_url, "--prefix", prefix
    )
    assert_one_line_error(run, "did not take the drain request within 1 s", "withdrawn")
    assert time.monotonic() - began < 10
    assert not await redis.exists(keys.drain("keep-me"))
