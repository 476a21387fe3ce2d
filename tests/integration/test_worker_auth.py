"""The worker's gRPC API over real processes: tokens, ownership, limits, the pinned default
model, TLS (mTLS) and client deadlines."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.certs import make_ca
from tests.worker_process import WorkerProcess
from voicefleet.rpc.channel import WorkerChannelConfig
from voicefleet.rpc.tts_client import PAUSE, RESUME, STOP, TTSClient

A = "orch-a-token-" + "a" * 20
B = "orch-b-token-" + "b" * 20
MOCKS = [{"id": "mock", "adapter": "mock"}, {"id": "extra", "adapter": "mock"}]
TWO_TOKENS = {"tokens": {"orch-a": A, "orch-b": B}}


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


async def speak(client: TTSClient, sid: str) -> None:
    async for _frame in client.synthesize(sid, ["Hello there."]):
        pass


async def stream_status(client: TTSClient, sid: str) -> tuple[grpc.StatusCode, str]:
    return await status_of(speak(client, sid))


def mock_worker(start_worker: Callable[..., WorkerProcess], **extra: Any) -> WorkerProcess:
    return start_worker(models=MOCKS, default_model="mock", **extra)


@pytest.fixture
def two_token_worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return mock_worker(start_worker, auth=TWO_TOKENS)


async def test_without_a_token_only_health_answers(two_token_worker: WorkerProcess) -> None:
    address = two_token_worker.address
    async with TTSClient(address) as anonymous, TTSClient(address, token=B[:-1] + "x") as wrong:
        calls: list[Callable[[TTSClient], Awaitable[Any]]] = [
            lambda c: c.start_session("s1"),
            lambda c: c.control("s1", PAUSE),
            lambda c: c.end_session("s1"),
            lambda c: c.list_models(),
            lambda c: c.load_model("extra"),
            lambda c: c.unload_model("extra"),
            lambda c: c.get_capabilities(),
            lambda c: speak(c, "s1"),
        ]
        for call in calls:
            code, message = await status_of(call(anonymous))
            assert code == grpc.StatusCode.UNAUTHENTICATED, (code, message)
            assert "authorization: Bearer <token>" in message
            code, message = await status_of(call(wrong))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "invalid token" in message
            assert B[:-1] not in message

        # A refused stream that is still sending gets UNAUTHENTICATED too, every time (not the
        # INTERNAL a grpc.aio client reports when its write fails after the status).
        words = [f"word{i} " for i in range(200)]
        for _ in range(10):
            code, _message = await status_of(_drain(anonymous.synthesize("s1", words)))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        # Reflection needs the token too; health never does.
        reflection = reflection_pb2_grpc.ServerReflectionStub(anonymous.channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        code, _ = await status_of(_first(reflection.ServerReflectionInfo(ask())))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(anonymous.channel)
        for service in ("", "voicefleet.tts.v1.TTS"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert A not in two_token_worker.log() and B[:-1] not in two_token_worker.log()


async def _drain(call: Any) -> None:
    async for _frame in call:
        pass


async def _first(call: Any) -> Any:
    async for reply in call:
        return reply
    return None


async def test_the_right_token_works(two_token_worker: WorkerProcess) -> None:
    async with TTSClient(two_token_worker.address, token=A) as client:
        assert (await client.list_models()).default_model_id == "mock"
        assert (await client.load_model("extra")).model.resident
        assert (await client.unload_model("extra")).unloaded_now
        await client.start_session("s1")
        frames = [f async for f in client.synthesize("s1", ["Hello there."])]
        assert frames[-1].final
        await client.control("s1", STOP)
        assert (await client.end_session("s1")).frames_sent == len(frames)
        reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        reply = await _first(reflection.ServerReflectionInfo(ask(), metadata=client.metadata))
        assert "voicefleet.tts.v1.TTS" in {s.name for s in reply.list_services_response.service}


async def test_the_token_comes_from_an_env_var_or_a_file(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEFLEET_WORKER__AUTH__TOKEN", A)
    from_env = mock_worker(start_worker)
    monkeypatch.delenv("VOICEFLEET_WORKER__AUTH__TOKEN")
    secret = tmp_path / "worker-token"
    secret.write_text(B + "\n")
    from_file = mock_worker(start_worker, auth={"token_file": str(secret)})
    for worker, token, other in ((from_env, A, B), (from_file, B, A)):
        async with TTSClient(worker.address, token=other) as client:
            code, _ = await status_of(client.start_session("s1"))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        assert token not in worker.log()
    async with TTSClient(from_env.address, token=A) as client:
        await client.start_session("s1")
    # A client can read the same secret file.
    config = WorkerChannelConfig(token_file=str(secret))
    async with TTSClient(from_file.address, config=config) as client:
        await client.start_session("s1")


async def test_another_identity_cannot_touch_a_session(two_token_worker: WorkerProcess) -> None:
    address = two_token_worker.address
    async with TTSClient(address, token=A) as owner, TTSClient(address, token=B) as other:
        await owner.start_session("mine")
        await owner.control("mine", PAUSE)
        answers = {
            sid: [
                await status_of(other.control(sid, STOP)),
                await stream_status(other, sid),
                await status_of(other.end_session(sid)),
            ]
            for sid in ("mine", "nobody")
        }
        for (code, message), (unknown_code, unknown_message) in zip(
            answers["mine"], answers["nobody"], strict=True
        ):
            assert code == unknown_code == grpc.StatusCode.NOT_FOUND
            assert message.replace("'mine'", "'<id>'") == unknown_message.replace(
                "'nobody'", "'<id>'"
            )
        # The same id is free for the other identity (no ALREADY_EXISTS to probe with) ...
        await other.start_session("mine")
        await other.end_session("mine")
        # ... and the owner's session is untouched: the other's STOP did not clear its PAUSE,
        # so its next stream starts held, and RESUME releases it.
        frames = aiter(owner.synthesize("mine", ["Still mine."]))
        first = asyncio.ensure_future(anext(frames))
        done, _ = await asyncio.wait({first}, timeout=0.5)
        assert not done, "a paused session's stream sent a frame"
        await owner.control("mine", RESUME)
        received = [await first] + [f async for f in frames]
        assert received[-1].final
        await owner.end_session("mine")


async def test_one_credential_cannot_fill_the_worker(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = mock_worker(
        start_worker, auth=TWO_TOKENS, limits={"max_sessions": 4, "max_sessions_per_credential": 2}
    )
    async with TTSClient(worker.address, token=A) as a, TTSClient(worker.address, token=B) as b:
        await a.start_session("a1")
        await a.start_session("a2")
        code, message = await status_of(a.start_session("a3"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "'orch-a' already holds 2" in message and "max_sessions_per_credential=2" in message
        await b.start_session("b1")
        await b.start_session("b2")
        code, message = await status_of(b.start_session("b3"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        await a.end_session("a1")
        await a.start_session("a3")


async def test_the_default_model_cannot_be_unloaded(two_token_worker: WorkerProcess) -> None:
    async with TTSClient(two_token_worker.address, token=A) as client:
        code, message = await status_of(client.unload_model("mock"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "'mock'" in message and "pinned default model" in message
        listing = await client.list_models()
        assert {m.model_id for m in listing.models if m.resident} == {"mock"}


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    return make_ca(tmp_path_factory.mktemp("certs"))


def _tls_worker(
    start_worker: Callable[..., WorkerProcess], certs: Path, **tls: str
) -> WorkerProcess:
    server = {"cert": str(certs / "server.pem"), "key": str(certs / "server.key"), **tls}
    return start_worker(models=MOCKS, default_model="mock", auth={"token": A}, tls=server)


async def test_tls_with_a_token(
    start_worker: Callable[..., WorkerProcess], certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WorkerProcess, "wait_serving", _wait_serving_tls(certs))
    worker = _tls_worker(start_worker, certs)
    trusted = WorkerChannelConfig(token=A, tls_ca=str(certs / "ca.pem"))
    async with TTSClient(worker.address, config=trusted) as client:
        await client.start_session("tls-1")
        frames = [f async for f in client.synthesize("tls-1", ["Over TLS."])]
        assert frames[-1].final
    by_name = WorkerChannelConfig(token=A, tls_ca=str(certs / "ca.pem"), server_name="tts.internal")
    async with TTSClient(worker.address, config=by_name) as client:
        assert (await client.list_models()).default_model_id == "mock"
    async with TTSClient(worker.address, token=A) as plaintext:
        code, _ = await status_of(plaintext.list_models())
        assert code == grpc.StatusCode.UNAVAILABLE
    wrong_name = WorkerChannelConfig(token=A, tls_ca=str(certs / "ca.pem"), server_name="evil")
    async with TTSClient(worker.address, config=wrong_name) as client:
        code, _ = await status_of(client.list_models())
        assert code == grpc.StatusCode.UNAVAILABLE


async def test_mtls_rejects_a_client_without_a_certificate(
    start_worker: Callable[..., WorkerProcess], certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(WorkerProcess, "wait_serving", _wait_serving_tls(certs, client=True))
    worker = _tls_worker(start_worker, certs, client_ca=str(certs / "ca.pem"))
    no_cert = WorkerChannelConfig(token=A, tls_ca=str(certs / "ca.pem"))
    async with TTSClient(worker.address, config=no_cert) as client:
        code, _ = await status_of(client.list_models())
        assert code == grpc.StatusCode.UNAVAILABLE
    with_cert = no_cert.model_copy(
        update={"tls_cert": str(certs / "client.pem"), "tls_key": str(certs / "client.key")}
    )
    async with TTSClient(worker.address, config=with_cert) as client:
        assert (await client.list_models()).default_model_id == "mock"


def _wait_serving_tls(certs: Path, client: bool = False) -> Callable[[WorkerProcess, float], None]:
    """WorkerProcess.wait_serving over TLS (the fixture's own probe dials plaintext)."""
    ca = (certs / "ca.pem").read_bytes()
    key = (certs / "client.key").read_bytes() if client else None
    chain = (certs / "client.pem").read_bytes() if client else None

    def wait(self: WorkerProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        credentials = grpc.ssl_channel_credentials(ca, key, chain)
        with grpc.secure_channel(self.address, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.log()}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"worker not SERVING over TLS after {timeout} s:\n{self.log()}")

    return wait


# -- deadlines ---------------------------------------------------------------------------------


async def test_a_hung_worker_fails_calls_at_their_deadline(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = mock_worker(start_worker)
    assert worker.proc is not None
    async with TTSClient(worker.address) as client:
        await client.start_session("held")
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            for call, limit in (
                (lambda: client.start_session("new"), client.timeouts.start_session_s),
                (lambda: client.control("held", PAUSE), client.timeouts.control_s),
                (lambda: client.end_session("held"), client.timeouts.end_session_s),
            ):
                began = time.monotonic()
                async with asyncio.timeout(limit + 5):
                    code, _ = await status_of(call())
                elapsed = time.monotonic() - began
                assert code == grpc.StatusCode.DEADLINE_EXCEEDED
                assert limit * 0.9 <= elapsed <= limit + 1.5, (limit, elapsed)
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
            worker.stop()
