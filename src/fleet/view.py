"""A live view of the worker fleet from the Redis registry.

The view refreshes on every join/leave announcement and on a timer. If Redis stops answering,
routing goes on with the last-known fleet and `degraded` says so (readiness reports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from voicefleet.fleet.config import RouterConfig
from voicefleet.rpc.registry import RegistryKeys, WorkerRecord, read_fleet

log = logging.getLogger(__name__)


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
