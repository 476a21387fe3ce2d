"""Routing: a live view of the worker fleet from the Redis registry, and the choice of worker.

The view refreshes on every join/leave announcement and on a timer. If Redis stops answering,
routing goes on with the last-known fleet and `degraded` says so (readiness reports it).
Choice: language and capabilities, then model availability, preferring a worker with the model
resident, then the least loaded, then the best median first-audio latency. Workers that just
failed are skipped for a cool-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from voicefleet.rpc.registry import (
    DEFAULT_PREFIX,
    RegistryKeys,
    WorkerRecord,
    read_fleet,
    speaks,
)

log = logging.getLogger(__name__)


class RouterConfig(BaseModel):
    """Registry and routing settings."""

    model_config = ConfigDict(extra="forbid")

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = DEFAULT_PREFIX
    refresh_s: float = Field(2.0, gt=0, description="periodic re-read of the fleet")
    failure_cooldown_s: float = Field(10.0, ge=0, description="skip a failed worker this long")
    required_capabilities: list[str] = Field(default_factory=lambda: ["streaming"])


class NoWorkerAvailable(Exception):
    """No registered worker can serve the request; the message says why."""


class FleetView:
    """The workers the registry knows, kept fresh in the background."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.keys = RegistryKeys(config.key_prefix)
        self.workers: dict[str, WorkerRecord] = {}
        self.degraded = False
        self.last_refresh = 0.0
        self._redis = Redis.from_url(
            config.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """First read (errors tolerated), then the refresh and subscription loops."""
        await self.refresh()
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._listen())]

    async def close(self) -> None:
        """Stop the loops and the connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._redis.aclose()

    async def refresh(self) -> bool:
        """Re-read the fleet; on a Redis error keep the last-known fleet and mark degraded."""
        try:
            records = await read_fleet(self._redis, self.keys)
        except (RedisError, OSError) as error:
            if not self.degraded:
                log.warning(
                    "registry unreachable (%s); routing with the last-known fleet of %d worker(s)",
                    error,
                    len(self.workers),
                )
            self.degraded = True
            return False
        if self.degraded:
            log.info("registry reachable again: %d worker(s)", len(records))
        self.degraded = False
        self.workers = {record.name: record for record in records}
        self.last_refresh = time.monotonic()
        self._changed.set()
        return True

    async def wait_changed(self) -> None:
        """Wait until the next successful refresh."""
        self._changed.clear()
        await self._changed.wait()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            await self.refresh()

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(self.keys.channel)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await self.refresh()
            except (RedisError, OSError):
                await asyncio.sleep(self.config.refresh_s)


class Router:
    """Chooses workers from a FleetView."""

    def __init__(self, fleet: FleetView) -> None:
        self.fleet = fleet
        self._failed: dict[str, float] = {}
        self._placed: dict[str, list[float]] = {}

    def mark_failed(self, name: str) -> None:
        """Skip this worker for the configured cool-down."""
        self._failed[name] = time.monotonic()

    def placed(self, name: str) -> None:
        """Remember a session placed on a worker until its record reflects it."""
        self._placed.setdefault(name, []).append(time.time())

    def _pending(self, worker: WorkerRecord) -> int:
        # Sessions placed after the worker measured its load are not in the record yet.
        recent = [at for at in self._placed.get(worker.name, []) if at > worker.updated_at]
        self._placed[worker.name] = recent
        return len(recent)

    def candidates(
        self, language: str = "", model: str = "", exclude: Iterable[str] = ()
    ) -> list[WorkerRecord]:
        """Usable workers, best first; NoWorkerAvailable (saying why) when there are none."""
        workers = list(self.fleet.workers.values())
        if not workers:
            raise NoWorkerAvailable("no TTS worker is registered")
        now = time.monotonic()
        cooldown = self.fleet.config.failure_cooldown_s
        skipped = set(exclude) | {n for n, at in self._failed.items() if now - at < cooldown}
        usable = [w for w in workers if w.name not in skipped]
        usable = [w for w in usable if speaks(w.capabilities.languages, language)]
        if not usable:
            raise NoWorkerAvailable(f"no healthy TTS worker speaks {language or 'any language'}")
        required = self.fleet.config.required_capabilities
        usable = [w for w in usable if all(getattr(w.capabilities, c, False) for c in required)]
        if model:
            usable = [w for w in usable if model in w.available_models]
        if not usable:
            raise NoWorkerAvailable(
                f"no TTS worker offers model {model or '(default)'} with {', '.join(required)}"
            )
        return sorted(usable, key=lambda w: self._rank(w, model))

    def _rank(self, worker: WorkerRecord, model: str) -> tuple[bool, float, int, float, str]:
        wanted = model or worker.default_model
        load = worker.load
        sessions = load.active_sessions + self._pending(worker)
        occupancy = sessions / load.max_sessions if load.max_sessions else float(sessions)
        p50 = load.first_audio_ms_p50 if load.first_audio_ms_p50 is not None else 1e9
        return (wanted not in worker.resident_models, occupancy, load.queue_depth, p50, worker.name)
