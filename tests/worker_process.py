"""Real `voicefleet worker` and `voicefleet orchestrator` subprocesses for tests and benchmarks:
start on a free port with a config written to a temp dir, wait until ready, always stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ServiceProcess:
    """A `voicefleet <command> --config FILE` child: config written, output kept in a log."""

    config: dict[str, Any]
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    # What the child runs under, e.g. ("ip", "netns", "exec", NS): it execs, so `proc` is the
    # service itself and signals reach it.
    wrapper: tuple[str, ...] = ()

    def _launch(self, command: str) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))
        # REDIS_URL would override the config's registry: each test chooses its own.
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        argv = [*self.wrapper, sys.executable, "-m", "voicefleet", command]
        argv += ["--config", str(self.config_path)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WorkerProcess(_ServiceProcess):
    """Runs one worker with a config written to a temp dir."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.name = str(config.get("name", f"test-worker-{self.port}"))
        self.config = {"name": self.name, "host": "127.0.0.1", "port": self.port, **config}
        self.config_path = tmp / f"{self.name}.yaml"
        self.log_path = tmp / f"{self.name}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self._launch("worker")
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.log()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"worker not SERVING after {timeout} s:\n{self.log()}")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def freeze(self) -> None:
        """SIGSTOP: hung, not dead (its sockets stay open, nothing answers)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after freeze()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no chance to deregister."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class OrchestratorProcess(_ServiceProcess):
    """Runs one orchestrator; ready when /readyz answers 200 (or /healthz, if asked)."""

    def __init__(self, tmp: Path, config: dict[str, Any], name: str = "orchestrator") -> None:
        self.port = free_port()
        http = {"host": "127.0.0.1", "port": self.port, **config.get("http", {})}
        self.config = {**config, "http": http}
        self.config_path = tmp / f"{name}-{self.port}.yaml"
        self.log_path = tmp / f"{name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as reply:
                return int(reply.status), reply.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def start(self, timeout: float = 90.0, require_ready: bool = True) -> OrchestratorProcess:
        self._launch("orchestrator")
        deadline = time.monotonic() + timeout
        path = "/readyz" if require_ready else "/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"orchestrator exited early:\n{self.log()}")
            try:
                if self.get(path)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"orchestrator not ready after {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
