"""Keeps this worker's record in the Redis registry: join, heartbeat, leave.

If Redis is unreachable the worker keeps serving; the heartbeat keeps trying and announces a
fresh join once Redis answers again. Each heartbeat also takes any drain request the operator
left for this worker (`voicefleet fleet drain`) and, when it names this run, calls `on_drain`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from voicefleet.rpc.redis_conn import RedisAccess, connect, redacted
from voicefleet.rpc.registry import (
    FleetEvent,
    RegistryKeys,
    WorkerRecord,
    delete_record,
    publish_event,
    take_drain_request,
    write_record,
)

log = logging.getLogger(__name__)


class Registrar:
    """Writes the worker record every heartbeat until stopped."""

    def __init__(
        self,
        redis_url: str,
        access: RedisAccess,
        keys: RegistryKeys,
        record: Callable[[], WorkerRecord],
        heartbeat_s: float,
        ttl_s: float,
        on_drain: Callable[[], None] | None = None,
    ) -> None:
        self.keys = keys
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self.registered = False
        self._record = record
        self._on_drain = on_drain
        self._url = redacted(redis_url)
        self._last_error = ""
        self._redis: Redis = connect(redis_url, access, timeout_s=max(0.5, heartbeat_s))

    async def beat(self) -> bool:
        """Write the record once; announce a join when (re)registering. False if Redis failed."""
        record = self._record()
        try:
            await write_record(self._redis, self.keys, record, self.ttl_s)
            if not self.registered:
                await publish_event(
                    self._redis,
                    self.keys,
                    FleetEvent(event="join", name=record.name, address=record.address),
                )
                log.info("registered %s at %s in the registry", record.name, record.address)
            self.registered = True
            await self._take_drain_request(record)
        except (RedisError, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
            if self.registered or reason != self._last_error:
                log.warning(
                    "registry %s unreachable (%s); still serving, will %sregister",
                    self._url,
                    reason,
                    "re-" if self.registered else "",
                )
            self._last_error = reason
            self.registered = False
        return self.registered

    async def _take_drain_request(self, record: WorkerRecord) -> None:
        request = await take_drain_request(self._redis, self.keys, record.name)
        if request is None or self._on_drain is None:
            return
        if request.started_at != record.started_at:
            log.warning(
                "ignoring a drain request for an earlier run of %s (started at %.3f)",
                record.name,
                request.started_at,
            )
            return
        log.info(
            "drain requested through the registry%s", f" by {request.by}" if request.by else ""
        )
        self._on_drain()

    async def run(self) -> None:
        """Heartbeat until cancelled."""
        while True:
            await self.beat()
            await asyncio.sleep(self.heartbeat_s)

    async def leave(self) -> None:
        """Delete the record and announce the leave (clean shutdown)."""
        record = self._record()
        try:
            await delete_record(self._redis, self.keys, record.name)
            await publish_event(
                self._redis,
                self.keys,
                FleetEvent(event="leave", name=record.name, address=record.address),
            )
            log.info("deregistered %s", record.name)
        except (RedisError, OSError) as error:
            log.warning(
                "could not deregister (%s); the record expires in %.0f s", error, self.ttl_s
            )
        finally:
            await self._redis.aclose()
