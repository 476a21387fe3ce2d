"""Faults across hosts. Every TTS worker runs on a "host" of its own: a network namespace joined
to this one by a veth pair, where it listens on the host's address and registers that address.
Redis and the orchestrator run here, in the root namespace. A host is partitioned (its link
set down), slowed (its link holds every byte), or every host loses the registry (Redis
restarted under load).

The namespaces need root and `ip netns` (CI runs as root): without them these tests fail,
saying so. Every namespace and link is deleted at teardown, and leftovers of dead test runs
(same name prefix) at start.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.hosts import (
    WORKER_PORT,
    Host,
    HostWorker,
    Registry,
    SlowLink,
    free_subnets,
    make_host,
    remove_host,
    remove_leftovers,
)
from tests.integration.conftest import (
    Stack,
    heard_each_sentence_once_in_order,
    open_session,
    piper_worker_config,
    transcribe_reply,
    wait_for_event,
)
from tests.integration.test_fleet_faults import REPLY, speaking_worker
from tests.worker_process import OrchestratorProcess, WorkerProcess
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.orchestrator.protocol import AudioEnd, AudioStart, ErrorEvent, ServerMessage
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.registry import RegistryKeys, WorkerRecord, read_fleet
from voicefleet.rpc.tts_client import TTSClient

MOCK = {"id": "mock", "adapter": "mock", "languages": ["en-US"]}


class Lab:
    """Hosts, the registry and a Stack of services; `close()` undoes all of it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.hosts: list[Host] = []
        self.links: list[SlowLink] = []
        self.registry: Registry | None = None
        self.stack: Stack | None = None

    def open(self, hosts: int) -> None:
        for subnet in free_subnets(hosts):
            self.hosts.append(make_host(subnet))
        self.registry = Registry([host.gateway for host in self.hosts])
        self.registry.start()
        self.stack = Stack(self.tmp, self.registry.url())

    def worker(self, host: Host, name: str, **extra: Any) -> HostWorker:
        """A worker on `host`, registering through the host's gateway; started (SERVING)."""
        assert self.stack is not None and self.registry is not None
        redis_url = self.registry.url(at=host.gateway)
        config = piper_worker_config(redis_url, self.stack.prefix, name=name, **extra)
        worker = HostWorker(self.tmp, host, config)
        self.stack.workers.append(worker)
        worker.start()
        return worker

    def orchestrator(self, **extra: Any) -> OrchestratorProcess:
        assert self.stack is not None
        return self.stack.orchestrator(**extra)

    def slow_link(self, host: Host, delay_s: float) -> SlowLink:
        """Latency on the way to `host`'s worker; advertise `gateway:port` to route through it."""
        link = SlowLink(host.gateway, (host.address, WORKER_PORT), delay_s).start()
        self.links.append(link)
        return link

    async def records(self) -> dict[str, WorkerRecord]:
        """The registry's live worker records, by name."""
        assert self.stack is not None and self.registry is not None
        redis = Redis.from_url(self.registry.url(), socket_timeout=2)
        try:
            return {r.name: r for r in await read_fleet(redis, RegistryKeys(self.stack.prefix))}
        finally:
            await redis.aclose()

    def close(self) -> None:
        problems: list[str] = []
        steps: list[Callable[[], None]] = []
        if self.stack is not None:
            steps.append(self.stack.stop)
        steps += [link.stop for link in self.links]
        if self.registry is not None:
            steps.append(self.registry.stop)
        steps += [functools.partial(remove_host, host) for host in self.hosts]
        for step in steps:
            try:
                step()
            except Exception as error:  # undo the rest anyway, then say what failed
                problems.append(f"{type(error).__name__}: {error}")
        if problems:
            raise RuntimeError("tearing down the hosts: " + "; ".join(problems))


def unavailable(why: str) -> None:
    """Fail (never skip) where network namespaces cannot be made, saying why."""
    pytest.fail(
        f"network namespaces are not available here: {why}. test_hosts.py runs each TTS "
        "worker on a host of its own (ip netns, veth pairs), so it must run as root with "
        "iproute2 (CI does)",
        pytrace=False,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Two hosts, a registry they reach, and a Stack; everything removed at teardown."""
    if os.geteuid() != 0:
        unavailable("not root")
    if shutil.which("ip") is None:
        unavailable("no `ip` command (iproute2)")
    built = Lab(tmp_path)
    try:
        why = ""
        try:
            remove_leftovers()
            built.open(hosts=2)
        except RuntimeError as error:
            why = str(error)
        if why:
            unavailable(why)
        yield built
    finally:
        built.close()


async def sessions_on(worker: WorkerProcess) -> int:
    async with TTSClient(worker.address) as client:
        caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest(), timeout=5)
        return int(caps.active_sessions)


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.1)


def readiness(orchestrator: OrchestratorProcess) -> tuple[int, dict[str, Any]]:
    status, body = orchestrator.get("/readyz")
    return status, json.loads(body)


async def registered(lab: Lab, expected: dict[str, str]) -> bool:
    """Whether the registry holds exactly these workers (name -> address)."""
    return {name: r.address for name, r in (await lab.records()).items()} == expected


async def replies_ended(events: list[ServerMessage], count: int) -> bool:
    return sum(isinstance(e, AudioEnd) for e in events) >= count


def audio_events(events: list[ServerMessage]) -> list[tuple[str, int]]:
    return [(e.type, e.turn) for e in events if isinstance(e, AudioStart | AudioEnd)]


def errors(events: list[ServerMessage]) -> list[ServerMessage]:
    return [e for e in events if isinstance(e, ErrorEvent)]


async def test_a_host_partitioned_mid_reply_hands_the_reply_to_the_other_host(
    lab: Lab, recognizer: FasterWhisperRecognizer
) -> None:
    first, second = lab.hosts
    workers = [lab.worker(first, "host-a"), lab.worker(second, "host-b")]
    hosts = {w.name: f"{w.host.address}:{WORKER_PORT}" for w in workers}
    await eventually(lambda: registered(lab, hosts), 10, "each worker registered its host")
    orchestrator = lab.orchestrator()
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text(REPLY, "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    await asyncio.sleep(1.5)
    pool: list[WorkerProcess] = [*workers]
    speaking = await speaking_worker(pool)
    cut, other = sorted(workers, key=lambda w: w is not speaking)
    cut.host.partition()
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 40)
    assert not errors(events), events
    heard_each_sentence_once_in_order(transcribe_reply(recognizer, b"".join(session.result.frames)))
    _status, metrics = orchestrator.get("/metrics")
    assert "voicefleet_tts_failovers_total 1.0" in metrics
    # The cut host cannot renew its record, so it leaves the fleet; the session goes on.
    await eventually(
        lambda: registered(lab, {other.name: hosts[other.name]}), 10, "the cut host expired"
    )
    await session.send_text("Still here.", "say")
    await eventually(lambda: replies_ended(events, 2), 20, "the second reply")
    await session.close()
    assert audio_events(events) == [
        ("audio_start", 1),
        ("audio_end", 1),
        ("audio_start", 2),
        ("audio_end", 2),
    ]
    assert not errors(events), events
    _status, ready = readiness(orchestrator)
    assert ready["workers"] == [other.name], ready


async def serving(workers: list[HostWorker]) -> list[str]:
    """The workers holding a session right now (GetCapabilities, past any slow link)."""
    return [w.name for w in workers if await sessions_on(w)]


async def one_reply(orchestrator: OrchestratorProcess, workers: list[HostWorker]) -> str:
    """A fresh session speaks one reply; the worker that served it (asked before it closes)."""
    session, events = await open_session(orchestrator.ws_url)
    await session.send_text("Hello there.", "say")
    await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 20)
    served = await serving(workers)
    await session.close()
    assert not errors(events), events
    assert len(served) == 1, served
    return served[0]


async def test_added_latency_on_one_host_moves_new_replies_to_the_other(lab: Lab) -> None:
    near, far = lab.hosts
    link = lab.slow_link(far, delay_s=0.15)
    # The far host computes faster (its own first-audio median is lower), so a router that
    # trusted the records alone would prefer it; only what this client observes, the link's
    # 300 ms round trip included, says otherwise. It also sorts first by name.
    slow = lab.worker(
        far,
        "host-a",
        models=[MOCK],
        default_model="mock",
        advertise_address=f"{far.gateway}:{link.port}",
    )
    quick = lab.worker(
        near, "host-b", models=[{**MOCK, "options": {"rtf": 0.25}}], default_model="mock"
    )
    workers = [slow, quick]
    orchestrator = lab.orchestrator()
    # Two sessions at once are spread by load, so the router observes both hosts once.
    first, first_events = await open_session(orchestrator.ws_url)
    await first.send_text("Hello there.", "say")
    await wait_for_event(first_events, lambda e: isinstance(e, AudioEnd), 20)
    second, second_events = await open_session(orchestrator.ws_url)
    await second.send_text("Hello there.", "say")
    await wait_for_event(second_events, lambda e: isinstance(e, AudioEnd), 20)
    assert sorted(await serving(workers)) == ["host-a", "host-b"]
    for session in (first, second):
        await session.close()
    records = await lab.records()
    slow_p50, quick_p50 = (records[n].load.first_audio_ms_p50 for n in ("host-a", "host-b"))
    assert slow_p50 is not None and quick_p50 is not None and slow_p50 < quick_p50, records

    async def quick_ranks_first() -> bool:
        return bool(readiness(orchestrator)[1]["workers"] == ["host-b", "host-a"])

    served = []
    for _ in range(3):
        # Load ranks before latency: wait until the last reply's session is off the records.
        await eventually(quick_ranks_first, 10, "the router ranks the near host first")
        served.append(await one_reply(orchestrator, workers))
    assert served == ["host-b"] * 3, served
    # Moved by latency, not by a fault: nothing stalled, nothing failed over.
    _status, metrics = orchestrator.get("/metrics")
    assert "voicefleet_tts_stalls_total 0.0" in metrics
    assert "voicefleet_tts_failovers_total 0.0" in metrics


LONG = "We walk down to the harbour, buy some bread, sit in the park and take the train home."


async def test_redis_restarted_under_load_routing_goes_on_and_the_hosts_register_again(
    lab: Lab,
) -> None:
    assert lab.registry is not None
    workers = [
        lab.worker(host, name, models=[MOCK], default_model="mock")
        for host, name in zip(lab.hosts, ("host-a", "host-b"), strict=True)
    ]
    names = [w.name for w in workers]
    hosts = {w.name: f"{w.host.address}:{WORKER_PORT}" for w in workers}
    orchestrator = lab.orchestrator()
    states = [readiness(orchestrator)[1]["registry"]]
    calls = [await open_session(orchestrator.ws_url) for _ in range(2)]
    for session, _events in calls:
        await session.send_text(LONG, "say")
    for _session, events in calls:
        await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    assert sorted(await serving(workers)) == names  # one caller speaking on each host
    lab.registry.stop()
    assert not [e for _s, events in calls for e in events if isinstance(e, AudioEnd)]

    async def degraded() -> bool:
        return str(readiness(orchestrator)[1]["registry"]).startswith("degraded")

    await eventually(degraded, 10, "/readyz says the registry is degraded")
    status, ready = readiness(orchestrator)
    states.append(ready["registry"].split(":")[0])
    assert status == 200 and ready["ready"] and sorted(ready["workers"]) == names, ready
    # A new caller during the outage is routed on the last-known fleet.
    late, late_events = await open_session(orchestrator.ws_url)
    await late.send_text("Hello there.", "say")
    await wait_for_event(late_events, lambda e: isinstance(e, AudioEnd), 20)
    for _session, events in calls:
        await wait_for_event(events, lambda e: isinstance(e, AudioEnd), 30)
    assert await degraded(), "Redis is still down: every reply above ended during the outage"
    lab.registry.start()
    await eventually(lambda: registered(lab, hosts), 10, "both hosts registered again")

    async def ok() -> bool:
        ready = readiness(orchestrator)[1]
        return bool(ready["registry"] == "ok" and sorted(ready["workers"]) == names)

    await eventually(ok, 10, "/readyz is ok again with both hosts")
    states.append("ok")
    await late.send_text("Back again.", "say")
    await eventually(lambda: replies_ended(late_events, 2), 20, "a reply after the outage")
    for session in (late, *(s for s, _e in calls)):
        await session.close()
    assert states == ["ok", "degraded", "ok"]
    for events in (late_events, *(e for _s, e in calls)):
        assert not errors(events), events
    assert audio_events(late_events) == [
        ("audio_start", 1),
        ("audio_end", 1),
        ("audio_start", 2),
        ("audio_end", 2),
    ]
