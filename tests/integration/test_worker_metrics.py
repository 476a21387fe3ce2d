"""A real worker's Prometheus endpoint, scraped over HTTP: the counters move with real work
(sessions, streams, frames, first frame, RTF, PAUSE/STOP, model loads and evictions, errors by
gRPC code), and the registry record says where to scrape."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.conftest import PIPER_MODEL
from tests.worker_process import WorkerProcess, free_port
from voicefleet.rpc.registry import RegistryKeys, WorkerRecord
from voicefleet.rpc.tts_client import PAUSE, STOP, TTSClient

TEXT = "Hello there, this is one short reply from the worker."
LONG = " ".join(["This sentence keeps the worker busy for a while."] * 6)
TOKEN = "metrics-test-token-" + "c" * 20
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled series not yet created."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def record_of(redis: Redis, keys: RegistryKeys, name: str) -> WorkerRecord:
    deadline = time.monotonic() + 10
    while (raw := await redis.get(keys.worker(name))) is None:
        assert time.monotonic() < deadline, "the worker never registered"
        await asyncio.sleep(0.1)
    return WorkerRecord.model_validate_json(raw)


async def test_a_synthesis_moves_the_worker_metrics(
    redis: Redis, redis_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    keys = RegistryKeys(f"metrics{free_port()}")
    worker = start_worker(
        models=[{**PIPER_MODEL, "options": {"threads": 1}}, {"id": "mock", "adapter": "mock"}],
        default_model="en_US-joe-medium",
        registry={"redis_url": redis_url, "key_prefix": keys.prefix, "heartbeat_s": 0.3},
        metrics={"host": "127.0.0.1", "port": 0},
    )
    record = await record_of(redis, keys, worker.name)
    assert record.metrics_port, "metrics.port 0 picks a port and the record names it"
    port = record.metrics_port

    before = scrape(port)
    assert value(before, "voicefleet_worker_model_loads_total", model="en_US-joe-medium") == 1
    assert value(before, "voicefleet_worker_model_load_seconds_count", model="en_US-joe-medium")
    assert value(before, "voicefleet_worker_models_resident") == 1
    assert value(before, "voicefleet_worker_sessions_limit") > 0
    assert value(before, "voicefleet_worker_draining") == 0

    async with TTSClient(worker.address) as client:
        await client.start_session("m-1")
        assert value(scrape(port), "voicefleet_worker_sessions_active") == 1
        frames = [frame async for frame in client.synthesize("m-1", [TEXT])]

        # A long reply: streams_active shows it running, then PAUSE and STOP are timed.
        long = aiter(client.synthesize("m-1", [LONG]))
        await anext(long)
        during = scrape(port)
        assert value(during, "voicefleet_worker_streams_active") == 1
        await client.control("m-1", PAUSE)
        await client.control("m-1", STOP)
        async for _ in long:
            pass
        await client.end_session("m-1")

        # Requests the worker refuses are counted by RPC and status code.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.start_session("m-2", model_id="no-such-model")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError):
            await client.control("never-started", STOP)

        # Load then unload a second model: a load and an eviction by reason.
        await client.load_model("mock")
        await client.unload_model("mock")

    after = scrape(port)
    assert value(after, "voicefleet_worker_sessions_total") == 1
    assert value(after, "voicefleet_worker_sessions_active") == 0
    assert value(after, "voicefleet_worker_streams_total") == 2
    assert value(after, "voicefleet_worker_streams_active") == 0
    sent = value(after, "voicefleet_worker_frames_sent_total")
    assert sent >= len(frames) + 1
    assert value(after, "voicefleet_worker_first_frame_seconds_count") == 2
    assert 0 < value(after, "voicefleet_worker_first_frame_seconds_sum") < 10
    assert value(after, "voicefleet_worker_rtf_count") >= 2
    assert value(after, "voicefleet_worker_control_seconds_count", command="pause") == 1
    assert value(after, "voicefleet_worker_control_seconds_count", command="stop") == 1
    assert value(after, "voicefleet_worker_control_seconds_sum", command="stop") < 1
    assert value(after, "voicefleet_worker_queue_depth") == 0
    errors = "voicefleet_worker_errors_total"
    assert value(after, errors, rpc="StartSession", code="NOT_FOUND") == 1
    assert value(after, errors, rpc="Control", code="NOT_FOUND") == 1
    assert value(after, "voicefleet_worker_model_loads_total", model="mock") == 1
    evictions = "voicefleet_worker_model_evictions_total"
    assert value(after, evictions, model="mock", reason="unload") == 1
    assert value(after, "voicefleet_worker_model_unload_seconds_count", model="mock") == 1
    assert value(after, "voicefleet_worker_models_resident") == 1

    # The registry's load figures and the metrics come from the same measurements.
    await asyncio.sleep(0.7)
    record = await record_of(redis, keys, worker.name)
    assert record.load.rtf is not None and record.load.first_audio_ms_p50 is not None
    assert record.metrics_port == port


async def test_a_refused_token_is_counted_and_a_worker_without_metrics_says_so(
    redis: Redis, redis_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    keys = RegistryKeys(f"metrics{free_port()}")
    port = free_port()
    locked = start_worker(
        models=[{"id": "mock", "adapter": "mock"}],
        default_model="mock",
        auth={"token": TOKEN},
        metrics={"port": port},
    )
    async with TTSClient(locked.address) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.start_session("no-token")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    samples = scrape(port)
    errors = "voicefleet_worker_errors_total"
    assert value(samples, errors, rpc="StartSession", code="UNAUTHENTICATED") == 1

    quiet = start_worker(
        models=[{"id": "mock", "adapter": "mock"}],
        default_model="mock",
        registry={"redis_url": redis_url, "key_prefix": keys.prefix},
    )
    assert (await record_of(redis, keys, quiet.name)).metrics_port is None


def test_a_taken_metrics_port_stops_the_worker_at_start_up(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    taken = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with pytest.raises(RuntimeError, match=f"metrics: cannot listen on 127.0.0.1:{taken}"):
            start_worker(
                models=[{"id": "mock", "adapter": "mock"}],
                default_model="mock",
                metrics={"port": taken},
            )
