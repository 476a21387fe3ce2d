"""Registry readers against a real Redis-protocol server: every record is validated on its own,
a bad one is skipped with its reason, the good ones beside it are still returned."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from voicefleet.rpc.registry import (
    SCHEMA_VERSION,
    RegistryKeys,
    SkipReason,
    WorkerCapabilities,
    WorkerLoad,
    WorkerRecord,
    parse_record,
    read_fleet,
    read_fleet_report,
    write_record,
)

_prefixes = itertools.count()


def good_record(name: str) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        address="127.0.0.1:50051",
        capabilities=WorkerCapabilities(languages=["en-US"]),
        default_model="joe",
        resident_models=["joe"],
        available_models=["joe"],
        load=WorkerLoad(max_sessions=8, rtf=0.05),
        started_at=1.0,
    )


def good_dict(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(good_record(name).model_dump_json())
    return data


@pytest.fixture
def keys() -> RegistryKeys:
    return RegistryKeys(f"records{next(_prefixes)}")


async def store(redis: Redis, keys: RegistryKeys, name: str | bytes, value: object) -> None:
    """Put a raw value under a worker's key and index it, as a careless writer would."""
    raw = value if isinstance(value, str | bytes) else json.dumps(value)
    key = keys.worker(name) if isinstance(name, str) else keys.worker("").encode() + name
    await redis.set(key, raw, ex=60)
    await redis.sadd(keys.index, name)


async def test_each_bad_record_is_skipped_with_its_reason_and_the_good_ones_are_returned(
    redis: Redis, keys: RegistryKeys
) -> None:
    await write_record(redis, keys, good_record("good"), ttl_s=60)
    await store(redis, keys, "evil", "{not json")
    await store(redis, keys, "array", [1, 2, 3])
    missing = good_dict("missing")
    del missing["address"], missing["load"]
    await store(redis, keys, "missing", missing)
    typed = good_dict("typed")
    typed["load"]["active_sessions"] = "3"  # a string, even one that looks like a number
    typed["capabilities"]["streaming"] = "yes"
    await store(redis, keys, "typed", typed)
    await store(redis, keys, "mismatch", good_dict("someone-else"))
    newer = {"schema_version": SCHEMA_VERSION + 1, "name": "newer", "endpoint": "grpc://x"}
    await store(redis, keys, "newer", newer)
    await store(redis, keys, "older", {**good_dict("older"), "schema_version": 0})
    await store(
        redis,
        keys,
        "unversioned",
        {k: v for k, v in good_dict("unversioned").items() if k != "schema_version"},
    )
    await write_record(redis, keys, good_record("zulu"), ttl_s=60)

    read = await read_fleet_report(redis, keys)

    assert [record.name for record in read.records] == ["good", "zulu"]
    reasons = {entry.name: entry.reason for entry in read.skipped}
    assert reasons == {
        "array": SkipReason.NOT_OBJECT,
        "evil": SkipReason.NOT_JSON,
        "mismatch": SkipReason.NAME_MISMATCH,
        "missing": SkipReason.INVALID,
        "newer": SkipReason.SCHEMA_NEWER,
        "older": SkipReason.SCHEMA_OLD,
        "typed": SkipReason.INVALID,
        "unversioned": SkipReason.INVALID,
    }
    details = {entry.name: entry.detail for entry in read.skipped}
    assert "address" in details["missing"] and "load" in details["missing"]
    assert "load.active_sessions" in details["typed"]
    assert "capabilities.streaming" in details["typed"]
    assert "someone-else" in details["mismatch"]
    assert str(SCHEMA_VERSION + 1) in details["newer"]
    assert [entry.name for entry in read.skipped] == sorted(reasons)
    # The plain reader returns the same good records and never raises either.
    assert [record.name for record in await read_fleet(redis, keys)] == ["good", "zulu"]


async def test_a_newer_writers_unknown_fields_are_ignored_at_every_level(
    redis: Redis, keys: RegistryKeys
) -> None:
    data = good_dict("newer-writer")
    data["region"] = "eu-west"
    data["capabilities"]["ssml"] = True
    data["load"]["gpu_memory_mb"] = 512
    await store(redis, keys, "newer-writer", data)

    read = await read_fleet_report(redis, keys)

    assert read.skipped == []
    [record] = read.records
    assert type(record) is WorkerRecord  # the canonical model, not a reader-side variant
    assert record == good_record("newer-writer").model_copy(
        update={"updated_at": record.updated_at}
    )
    assert "region" not in record.model_dump_json() and "ssml" not in record.model_dump_json()


def test_writers_still_write_exactly_the_schema() -> None:
    with pytest.raises(ValidationError, match="extra"):
        WorkerRecord(**good_dict("w"), region="eu-west")
    with pytest.raises(ValidationError, match="extra"):
        WorkerLoad(gpu_memory_mb=512)  # type: ignore[call-arg]
    assert set(good_dict("w")) == set(WorkerRecord.model_fields)


async def test_unreadable_values_and_names_are_skipped_not_raised(
    redis: Redis, keys: RegistryKeys
) -> None:
    await write_record(redis, keys, good_record("good"), ttl_s=60)
    await store(redis, keys, "binary", b"\xff\xfe\x00garbage")
    await store(redis, keys, "deep", "[" * 100_000 + "]" * 100_000)
    await store(redis, keys, "null", "null")
    await store(redis, keys, b"\xffbad-name", json.dumps(good_dict("x")))
    await redis.sadd(keys.index, "expired")  # indexed, no record: pruned, not skipped

    read = await read_fleet_report(redis, keys)

    assert [record.name for record in read.records] == ["good"]
    reasons = {entry.name: entry.reason for entry in read.skipped}
    assert reasons == {
        "binary": SkipReason.NOT_JSON,
        "deep": SkipReason.NOT_JSON,
        "null": SkipReason.NOT_OBJECT,
        "\\xffbad-name": SkipReason.INVALID,
    }
    assert b"expired" not in await redis.smembers(keys.index)


def test_metrics_port_is_optional_so_older_records_still_parse() -> None:
    data = good_dict("w-old")
    assert data.pop("metrics_port") is None
    assert parse_record("w-old", json.dumps(data)).metrics_port is None
    assert parse_record("w-old", json.dumps({**data, "metrics_port": 9464})).metrics_port == 9464
