"""A live view of the worker fleet from the Redis registry.

The view refreshes on every join/leave announcement and on a timer. If Redis stops answering,
routing goes on with the last-known fleet and `degraded` says so (readiness reports it). When
Redis comes back restarted (its run id changed) and so empty, the last-known workers are kept
until they re-register or `restart_grace_s` passes, so routing never sees an empty fleet
between the restart and the workers' next heartbeat.

Nothing but cancellation stops the refresh and subscription loops:
- a bad record (see voicefleet.rpc.registry) is skipped: it is listed in `skipped` while it is
  bad, counted in `skipped_total` by reason, and logged once when its name first turns up bad
  (again only if its reason changes, or after it was fixed or deleted and turns bad again);
  the other records are used as usual;
- an unexpected error in a loop is logged with its traceback, the fleet is kept, `degraded`
  is set, and the loop goes on after a short pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from voicefleet.fleet.config import RouterConfig
from voicefleet.rpc.redis_conn import connect
from voicefleet.rpc.registry import (
    FleetRead,
    RegistryKeys,
    SkippedRecord,
    SkipReason,
    WorkerRecord,
    read_fleet_report,
)

log = logging.getLogger(__name__)

_BACKOFF_S = 0.5  # the most a loop waits after an unexpected error (less when refresh_s is)
_SOCKET_TIMEOUT_S = 1.0


class FleetView:
    """The workers the registry knows, kept fresh in the background."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.keys = RegistryKeys(config.key_prefix)
        self.workers: dict[str, WorkerRecord] = {}
        # The records skipped by the last successful read, by worker name.
        self.skipped: dict[str, SkippedRecord] = {}
        # Records that turned bad (a new name, or a new reason for a name), by reason.
        self.skipped_total: dict[str, int] = {reason.value: 0 for reason in SkipReason}
        self.degraded = False
        self.last_error = ""  # why the last refresh failed ("" once one succeeds)
        self.last_refresh = 0.0  # time.monotonic() of the last successful refresh; 0: never
        self.last_refresh_at = 0.0  # the same moment as time.time()
        self._redis = connect(config.redis_url, config.redis, timeout_s=_SOCKET_TIMEOUT_S)
        self._run_id = ""  # the Redis server's run id at the last read ("" unknown)
        self._held: dict[str, WorkerRecord] = {}  # last-known workers kept after a restart
        self._held_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._reading = asyncio.Lock()

    async def start(self) -> None:
        """First read (errors tolerated), then the refresh and subscription loops."""
        await self._refresh_guarded()
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._listen())]

    async def close(self) -> None:
        """Stop the loops and the connection."""
        for task in self._tasks:
            await stop_task(task)
        await self._redis.aclose()

    @property
    def running(self) -> bool:
        """Whether both background loops are alive (False before start and after close)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def state(self) -> str:
        """The registry's state: "ok", or "degraded: <why>" when the fleet may be out of date."""
        if self.degraded:
            return f"degraded: using the last-known fleet ({self.last_error})"
        if self._held:
            return (
                f"degraded: the registry restarted; keeping {len(self._held)} last-known "
                "worker(s) until they register again"
            )
        if not self.last_refresh:
            return "degraded: the registry has not been read yet"
        if self._tasks and not self.running:
            return "degraded: the registry loops stopped; using the last-known fleet"
        age = time.monotonic() - self.last_refresh
        if self._tasks and age > 3 * self.config.refresh_s + 2 * _SOCKET_TIMEOUT_S:
            return f"degraded: no successful registry read for {age:.1f} s"
        return "ok"

    async def refresh(self) -> bool:
        """Re-read the fleet; on a Redis error keep the last-known fleet and mark degraded."""
        async with self._reading:  # one read at a time, so an older one never lands last
            try:
                read = await read_fleet_report(self._redis, self.keys)
                run_id = await self._server_run_id()
            except (RedisError, OSError) as error:
                self._failed(f"registry unreachable: {error}")
                return False
            self._apply(read, run_id)
        return True

    async def _server_run_id(self) -> str:
        """The server's run id (new on every restart); "" where INFO is not allowed."""
        try:
            info = await self._redis.info("server")
        except RedisError:
            return ""
        return str(info.get("run_id", ""))

    def _apply(self, read: FleetRead, run_id: str = "") -> None:
        if self.degraded:
            log.info("registry read again: %d worker(s)", len(read.records))
        self.degraded = False
        self.last_error = ""
        workers = {record.name: record for record in read.records}
        now = time.monotonic()
        if run_id and self._run_id and run_id != self._run_id and self.workers:
            self._held = {n: r for n, r in self.workers.items() if n not in workers}
            self._held_until = now + self.config.restart_grace_s
            if self._held:
                log.warning(
                    "the registry restarted (new run id); keeping %d last-known worker(s) for "
                    "up to %.1f s while they register again",
                    len(self._held),
                    self.config.restart_grace_s,
                )
        self._run_id = run_id or self._run_id
        for name in [n for n in self._held if n in workers or now >= self._held_until]:
            del self._held[name]
        self.workers = {**self._held, **workers}
        self._note_skipped(read.skipped)
        self.last_refresh = time.monotonic()
        self.last_refresh_at = time.time()
        self._changed.set()

    async def wait_changed(self) -> None:
        """Wait until the next successful refresh."""
        self._changed.clear()
        await self._changed.wait()

    def _failed(self, why: str) -> None:
        if not self.degraded:
            log.warning(
                "%s; routing with the last-known fleet of %d worker(s)", why, len(self.workers)
            )
        self.degraded = True
        self.last_error = why

    def _note_skipped(self, skipped: list[SkippedRecord]) -> None:
        current = {entry.name: entry for entry in skipped}
        for name, entry in current.items():
            previous = self.skipped.get(name)
            if previous is not None and previous.reason == entry.reason:
                continue
            self.skipped_total[entry.reason.value] += 1
            log.warning(
                "skipping the registry record %s (%s): %s; the rest of the fleet is used",
                self.keys.worker(name),
                entry.reason.value,
                entry.detail,
            )
        for name in self.skipped.keys() - current.keys():
            log.info("the registry record %s is no longer skipped", self.keys.worker(name))
        self.skipped = current

    async def _refresh_guarded(self) -> bool:
        """refresh(), with any unexpected error logged (with its traceback), never raised."""
        try:
            return await self.refresh()
        except Exception as error:  # a bug must not stop routing: keep the last-known fleet
            log.exception("unexpected error reading the registry; keeping the last-known fleet")
            self._failed(f"unexpected error: {type(error).__name__}: {error}")
            await asyncio.sleep(self._backoff_s)
            return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            await self._refresh_guarded()

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.keys.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._refresh_guarded()
            except (RedisError, OSError):
                await asyncio.sleep(self.config.refresh_s)
                continue
            except Exception:
                log.exception("unexpected error in the registry subscription; resubscribing")
            await asyncio.sleep(self._backoff_s)

    @property
    def _backoff_s(self) -> float:
        return min(_BACKOFF_S, self.config.refresh_s)


async def stop_task(task: asyncio.Task[None], retry_s: float = 0.2) -> None:
    """Cancel `task` and wait until it has ended, cancelling again while it runs on: in Python
    3.11 a cancellation that races with an inner `asyncio.wait_for` finishing is lost (redis-py
    awaits one in every command), and the subscription would then block on its read forever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    with contextlib.suppress(asyncio.CancelledError):
        await task
