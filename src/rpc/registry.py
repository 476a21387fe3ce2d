"""The Redis registry: the second contract between tiers (the first is tts.proto).

Keys (prefix configurable, default ``voicefleet``):
- ``{prefix}:worker:{name}``: a string holding one WorkerRecord as JSON, written with a TTL and
  refreshed by the worker's heartbeat. A worker that dies stops refreshing and disappears.
- ``{prefix}:workers``: a set of worker names, the index readers use instead of KEYS/SCAN.
  A name whose record has expired is pruned by the next reader.
- ``{prefix}:fleet``: a pub/sub channel carrying FleetEvent JSON (join / leave).
- ``{prefix}:drain:{name}``: a DrainRequest as JSON, written by the operator (`voicefleet fleet
  drain`) with a TTL. The worker takes it (GETDEL) on its next heartbeat and, when it names this
  run of the worker (its `started_at`), drains exactly as on SIGTERM.

Writers write exactly the schema below (the models forbid unknown fields). Readers
(`read_fleet_report`, and `read_fleet` for the good records only) validate each record on its
own, so a bad record never hides the others and never raises (Redis errors still do): it is
returned as a `SkippedRecord` with a `SkipReason`: not JSON (`not_json`), not an object
(`not_object`), a missing field, a wrong type or an index name that is not UTF-8 (`invalid`),
a name that does not match its key (`name_mismatch`), a schema version this reader does not
support (`schema_newer`, `schema_old`). Types are checked strictly (no "3" for 3).

Schema versions: `schema_version` is one integer that changes only on a breaking change (a
field removed, renamed, retyped or made required). Adding an optional field keeps the version,
and readers ignore fields they do not know, so a newer writer of the same version is read
normally. A reader accepts MIN_SCHEMA_VERSION <= schema_version <= SCHEMA_VERSION; a higher
version is skipped as `schema_newer`, a lower one as `schema_old`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

SCHEMA_VERSION = 1
MIN_SCHEMA_VERSION = 1
DEFAULT_PREFIX = "voicefleet"
_DETAIL_CHARS = 200


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

    def drain(self, name: str) -> str:
        """The key of a drain request for one worker."""
        return f"{self.prefix}:drain:{name}"


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
    #: Public voice name -> model id (absent from records written before voices existed).
    voices: dict[str, str] = Field(default_factory=dict)
    load: WorkerLoad
    #: The worker's Prometheus port on the host of `address` (absent: no endpoint, or a record
    #: written before workers had one).
    metrics_port: int | None = None
    started_at: float
    updated_at: float = Field(default_factory=time.time)


class FleetEvent(BaseModel):
    """A join or leave announcement on the fleet channel."""

    model_config = ConfigDict(extra="forbid")

    event: Literal["join", "leave"]
    name: str
    address: str
    at: float = Field(default_factory=time.time)


class DrainRequest(BaseModel):
    """The operator asks one run of a worker to drain (the run that started at `started_at`,
    so a request left behind never drains a later worker of the same name)."""

    model_config = ConfigDict(extra="ignore")

    started_at: float
    requested_at: float = Field(default_factory=time.time)
    by: str = ""


class _ReadCapabilities(WorkerCapabilities):
    model_config = ConfigDict(extra="ignore")


class _ReadLoad(WorkerLoad):
    model_config = ConfigDict(extra="ignore")


class _ReadRecord(WorkerRecord):
    """The reader's view of the schema: the same fields, unknown ones (a newer writer's,
    at any level) ignored. Every nested model of WorkerRecord needs its lenient twin here."""

    model_config = ConfigDict(extra="ignore")

    capabilities: _ReadCapabilities
    load: _ReadLoad


class SkipReason(StrEnum):
    """Why a reader skipped a record (a small fixed set: it is a metric label)."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    INVALID = "invalid"
    NAME_MISMATCH = "name_mismatch"
    SCHEMA_NEWER = "schema_newer"
    SCHEMA_OLD = "schema_old"


@dataclass(frozen=True)
class SkippedRecord:
    """A record a reader could not use: its worker name (from the index), why, and a short
    human-readable detail (never the whole record)."""

    name: str
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class FleetRead:
    """One read of the registry: the usable records and the skipped ones, both by name."""

    records: list[WorkerRecord] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)


class RecordError(ValueError):
    """A record that cannot be used, with the reason a reader reports."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail[:_DETAIL_CHARS]


def parse_record(name: str, value: bytes | str) -> WorkerRecord:
    """Validate one stored record for worker `name` (the name in its key); raises RecordError.

    The version is checked before the shape, so a newer writer's record is reported as
    `schema_newer` even when its fields changed."""
    try:
        data = json.loads(value)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise RecordError(SkipReason.NOT_JSON, f"not JSON: {error}") from None
    except RecursionError:
        raise RecordError(SkipReason.NOT_JSON, "not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RecordError(SkipReason.NOT_OBJECT, f"a JSON {type(data).__name__}, not an object")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(SkipReason.INVALID, f"schema_version must be an integer: {version!r}")
    if version > SCHEMA_VERSION:
        raise RecordError(
            SkipReason.SCHEMA_NEWER,
            f"schema_version {version} is newer than this reader's {SCHEMA_VERSION}",
        )
    if version < MIN_SCHEMA_VERSION:
        raise RecordError(
            SkipReason.SCHEMA_OLD,
            f"schema_version {version} is older than the oldest supported, {MIN_SCHEMA_VERSION}",
        )
    try:
        lenient = _ReadRecord.model_validate(data, strict=True)
    except ValidationError as error:
        raise RecordError(SkipReason.INVALID, _summary(error)) from None
    if lenient.name != name:
        raise RecordError(
            SkipReason.NAME_MISMATCH, f"the record names {lenient.name!r}, its key {name!r}"
        )
    # The canonical model (the unknown fields are gone already, the types checked).
    return WorkerRecord.model_validate(lenient.model_dump())


def _summary(error: ValidationError) -> str:
    """The first few validation errors as `loc: message`, without the input values."""
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'record'}: {item['msg']}"
        for item in error.errors(include_url=False, include_input=False)
    ]
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


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


async def read_fleet_report(redis: Redis, keys: RegistryKeys) -> FleetRead:
    """Every live worker record and every skipped one; index entries whose record expired are
    pruned. A bad record is skipped with its reason, never raised; Redis errors propagate."""
    read = FleetRead()
    names: list[str] = []
    for member in await redis.smembers(keys.index):
        if isinstance(member, str):
            names.append(member)
            continue
        try:
            names.append(member.decode())
        except UnicodeDecodeError:
            shown = member.decode("utf-8", "backslashreplace")
            read.skipped.append(SkippedRecord(shown, SkipReason.INVALID, "name is not UTF-8"))
    names.sort()
    if not names:
        return read
    raw = await redis.mget([keys.worker(name) for name in names])
    expired: list[str] = []
    for name, value in zip(names, raw, strict=True):
        if value is None:
            expired.append(name)
            continue
        try:
            read.records.append(parse_record(name, value))
        except RecordError as error:
            read.skipped.append(SkippedRecord(name, error.reason, error.detail))
    if expired:
        await redis.srem(keys.index, *expired)
    read.skipped.sort(key=lambda entry: entry.name)
    return read


async def read_fleet(redis: Redis, keys: RegistryKeys) -> list[WorkerRecord]:
    """Every live, valid worker record (bad ones skipped silently: see read_fleet_report)."""
    return (await read_fleet_report(redis, keys)).records


async def request_drain(
    redis: Redis, keys: RegistryKeys, name: str, request: DrainRequest, ttl_s: float
) -> None:
    """Leave a drain request for worker `name` (it expires after `ttl_s` if never taken)."""
    await redis.set(keys.drain(name), request.model_dump_json(), px=int(ttl_s * 1000))


async def take_drain_request(redis: Redis, keys: RegistryKeys, name: str) -> DrainRequest | None:
    """Remove and return the drain request for worker `name`, if any (an unreadable one is
    removed and ignored: it cannot say which run it was meant for)."""
    value = await redis.getdel(keys.drain(name))
    if value is None:
        return None
    try:
        return DrainRequest.model_validate_json(value)
    except ValidationError:
        return None


async def pending_drains(redis: Redis, keys: RegistryKeys, names: list[str]) -> set[str]:
    """The workers among `names` with a drain request not taken yet."""
    if not names:
        return set()
    values = await redis.mget([keys.drain(name) for name in names])
    return {name for name, value in zip(names, values, strict=True) if value is not None}
