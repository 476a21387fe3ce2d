"""`voicefleet up` as a real process tree (embedded valkey, a mock worker, the orchestrator) on
free ports: a worker killed with SIGKILL is restarted while valkey and the orchestrator keep
running, and Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops
everything in order, the worker deregistering before valkey stops, with nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from tests.integration.conftest import open_session
from tests.worker_process import free_port

REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> dict[int, str]:
    """Live child processes of `pid` and their command lines (from /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def serving(address: str) -> bool:
    """The worker's gRPC health check answers SERVING."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_until(condition: Callable[[], object], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {within_s} s: {what}")


class Up:
    """`voicefleet up` in its own process group, with every port chosen free."""

    def __init__(self, tmp: Path) -> None:
        self.log_path = tmp / "up.log"
        self.port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.redis_port = free_port()
        self.worker_port = free_port()
        self.wyoming_port = free_port()
        env = {
            k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("VOICE")
        }
        argv = [sys.executable, "-m", "voicefleet", "up", "--port", str(self.port)]
        argv += ["--redis-port", str(self.redis_port), "--worker-port", str(self.worker_port)]
        argv += ["--worker-config", "configs/worker-mock.yaml"]
        argv += ["--wyoming-port", str(self.wyoming_port)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self, path: str) -> int:
        """The orchestrator's HTTP status for `path`."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def ready(self) -> bool:
        try:
            return self.status("/readyz") == 200
        except OSError:
            return False

    def child(self, word: str) -> int:
        matches = [pid for pid, cmd in children(self.proc.pid).items() if word in cmd]
        assert len(matches) == 1, (word, children(self.proc.pid), self.log())
        return matches[0]


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    started = Up(tmp_path)
    try:
        wait_until(started.ready, 90, "up ready")
        yield started
    finally:
        if started.proc.poll() is None:
            os.killpg(started.proc.pid, signal.SIGKILL)
            started.proc.wait(10)


@pytest.mark.timeout(180)
async def test_a_killed_worker_is_restarted_and_ctrl_c_stops_everything(up: Up) -> None:
    first_worker = up.child("voicefleet worker")
    valkey = up.child("valkey-server")
    # up starts the Wyoming endpoint beside HTTP, on the port asked for.
    async with AsyncTcpClient("127.0.0.1", up.wyoming_port) as wyoming:
        await wyoming.write_event(Describe().event())
        described = await wyoming.read_event()
    assert described is not None and Info.is_type(described.type)
    assert [m.name for m in Info.from_event(described).asr[0].models] == ["tiny.en"]

    os.kill(first_worker, signal.SIGKILL)
    assert up.status("/healthz") == 200
    wait_until(
        lambda: [p for p in children(up.proc.pid) if p not in (first_worker, valkey)],
        20,
        "a new worker process",
    )
    assert up.status("/healthz") == 200
    second_worker = up.child("voicefleet worker")
    assert second_worker != first_worker and alive(valkey) and up.proc.poll() is None
    # /readyz may still list the dead worker's record (it expires within its TTL): wait for the
    # new one to serve and register, then a typed turn must get audio through it.
    wait_until(lambda: serving(f"127.0.0.1:{up.worker_port}"), 30, "the new worker serving")
    wait_until(lambda: up.log().count("registered mock-1") >= 2, 10, "registered again")
    wait_until(up.ready, 30, "ready again")
    session, _events = await open_session(up.ws_url)
    session.mark_input_start()
    await session.send_text("Back again.", "say")
    assert await session.wait_reply(30), session.failure
    await session.close()
    assert session.result.frames
    log = up.log()
    assert "the TTS worker (pid" in log and "was killed by SIGKILL" in log, log
    assert "restarting it in 0.5 s (restart 1)" in log, log
    assert "Traceback" not in log, log

    os.killpg(up.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert up.proc.wait(40) == 0, up.log()
    for pid in (second_worker, valkey):
        wait_until(lambda pid=pid: not alive(pid), 5, f"process {pid} gone")
    log = up.log()
    assert "deregistered mock-1" in log, log
    assert "registry unreachable" not in log.split("orchestrator shutting down")[-1], log
    assert "Traceback" not in log, log
