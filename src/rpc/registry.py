"""The Redis registry: the second contract between tiers (the first is tts.proto).

Keys (prefix configurable, default ``voicefleet``):
- ``{prefix}:worker:{name}``: a string holding one WorkerRecord as JSON, written with a TTL and
  refreshed by the worker's heartbeat. A worker that dies stops refreshing and disappears.
- ``{prefix}:workers``: a set of worker names, the index readers use instead of KEYS/SCAN.
  A name whose record has expired is pruned by the next reader.
- ``{prefix}:fleet``: a pub/sub channel carrying FleetEvent JSON (join / leave).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "voicefleet"


def speaks(languages: Iterable[str], wanted: str) -> bool:
    """Whether any of `languages` serves `wanted` (BCP-47; the base language decides, so
    "en-GB" is served by "en-US"; an empty `wanted` accepts anything). Router and worker both
    use this, so a worker never refuses a session the router sent it for its language."""
    if not wanted:
        return True
    base = wanted.lower().split("-")[0]
    return any(spoken.lower().split("-")[0] == base for spoken in languages)


class RegistryKeys:
    """Key names under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    def worker(self, name: str) -> str:
        """The key of one worker's record."""
        return f"{self.prefix}:worker:{name}"

    @property
    def index(self) -> str:
        """The set of registered worker names."""
        return f"{self.prefix}:workers"

    @property
    def channel(self) -> str:
        """The join/leave pub/sub channel."""
        return f"{self.prefix}:fleet"


class WorkerCapabilities(BaseModel):
    """What a worker can do (mirrors tts.proto Capabilities)."""

    model_config = ConfigDict(extra="forbid")

    streaming: bool = True
    zero_shot: bool = False
    lora: bool = False
    cpu_ok: bool = True
    languages: list[str] = Field(default_factory=list)
    emotive_zero_prompt: bool = False


class WorkerLoad(BaseModel):
    """How busy a worker is, refreshed with every heartbeat."""

    model_config = ConfigDict(extra="forbid")

    active_sessions: int = 0
    max_sessions: int = 0
    active_streams: int = 0
    queue_depth: int = 0
    rtf: float | None = None
    first_audio_ms_p50: float | None = None


class WorkerRecord(BaseModel):
    """One worker's registry record."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    name: str
    address: str
    capabilities: WorkerCapabilities
    default_model: str
    resident_models: list[str]
    available_models: list[str]
    load: WorkerLoad
    started_at: float
    updated_at: float = Field(default_factory=time.time)


class FleetEvent(BaseModel):
    """A join or leave announcement on the fleet channel."""

    model_config = ConfigDict(extra="forbid")

    event: Literal["join", "leave"]
    name: str
    address: str
    at: float = Field(default_factory=time.time)


async def write_record(
    redis: Redis, keys: RegistryKeys, record: WorkerRecord, ttl_s: float
) -> None:
    """Write (or refresh) a record with its TTL and make sure it is indexed."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.worker(record.name), record.model_dump_json(), px=int(ttl_s * 1000))
        pipe.sadd(keys.index, record.name)
        await pipe.execute()


async def delete_record(redis: Redis, keys: RegistryKeys, name: str) -> None:
    """Remove a record and its index entry (clean shutdown)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(name))
        pipe.srem(keys.index, name)
        await pipe.execute()


async def publish_event(redis: Redis, keys: RegistryKeys, event: FleetEvent) -> None:
    """Announce a join or leave."""
    await redis.publish(keys.channel, event.model_dump_json())


async def read_fleet(redis: Redis, keys: RegistryKeys) -> list[WorkerRecord]:
    """Every live worker record; index entries whose record expired are pruned."""
    names = sorted(
        n.decode() if isinstance(n, bytes) else str(n) for n in await redis.smembers(keys.index)
    )
    if not names:
        return []
    raw = await redis.mget([keys.worker(name) for name in names])
    records: list[WorkerRecord] = []
    expired: list[str] = []
    for name, value in zip(names, raw, strict=True):
        if value is None:
            expired.append(name)
            continue
        records.append(WorkerRecord.model_validate_json(value))
    if expired:
        await redis.srem(keys.index, *expired)
    return records
