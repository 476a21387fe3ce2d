"""Drain requests in the registry against a real Redis-protocol server: left by the operator,
taken once by the worker, expiring when nobody takes them."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from redis.asyncio import Redis

from voicefleet.rpc.registry import (
    DrainRequest,
    RegistryKeys,
    pending_drains,
    request_drain,
    take_drain_request,
)

_prefixes = itertools.count()


@pytest.fixture
def keys() -> RegistryKeys:
    return RegistryKeys(f"drainunit{next(_prefixes)}")


async def test_a_request_is_pending_until_taken_once(redis: Redis, keys: RegistryKeys) -> None:
    request = DrainRequest(started_at=1234.5678901234, by="ops@host")
    await request_drain(redis, keys, "w1", request, ttl_s=30)

    assert await pending_drains(redis, keys, ["w1", "w2"]) == {"w1"}
    taken = await take_drain_request(redis, keys, "w1")
    assert taken == request  # started_at round-trips exactly: the worker compares it
    assert await take_drain_request(redis, keys, "w1") is None
    assert await pending_drains(redis, keys, ["w1"]) == set()
    assert await pending_drains(redis, keys, []) == set()


async def test_an_untaken_request_expires(redis: Redis, keys: RegistryKeys) -> None:
    await request_drain(redis, keys, "w1", DrainRequest(started_at=1.0), ttl_s=0.2)
    await asyncio.sleep(0.4)

    assert await take_drain_request(redis, keys, "w1") is None


async def test_an_unreadable_request_is_removed_and_ignored(
    redis: Redis, keys: RegistryKeys
) -> None:
    await redis.set(keys.drain("w1"), b"{not json")

    assert await take_drain_request(redis, keys, "w1") is None
    assert not await redis.exists(keys.drain("w1"))
    assert keys.drain("w1") == f"{keys.prefix}:drain:w1"
