import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from voicefleet.tts.adapters import ModelSpec, create_adapter
from voicefleet.tts.adapters.mock import MockAdapter
from voicefleet.tts.errors import ModelInUse, ModelNotFound
from voicefleet.tts.models import ModelManager


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowMock(MockAdapter):
    """A mock whose load takes a while, to make concurrent loads overlap."""

    def load(self) -> None:
        import time

        time.sleep(0.2)
        super().load()


def manager(clock: Clock, *, ttl_s: float = 10, cap: int = 2, pin: bool = True) -> ModelManager:
    catalog = {name: ModelSpec(id=name, adapter="mock") for name in ("a", "b", "c", "d")}
    return ModelManager(
        catalog,
        "a",
        ThreadPoolExecutor(2),
        ttl_s=ttl_s,
        resident_cap=cap,
        pin_default=pin,
        adapter_factory=SlowMock,
        clock=clock,
    )


async def test_refcount_protects_models_from_ttl_eviction() -> None:
    clock = Clock()
    models = manager(clock, ttl_s=5)
    await models.acquire("b")
    await models.ensure_loaded("c")
    clock.now += 6
    assert models.evict_expired() == ["c"]
    assert models.resident_ids == ["b"]
    models.release("b")
    clock.now += 4
    assert models.evict_expired() == []  # release counts as use
    clock.now += 1
    assert models.evict_expired() == ["b"]
    assert models.resident_ids == []


async def test_default_model_is_pinned_unless_configured_otherwise() -> None:
    clock = Clock()
    pinned, unpinned = manager(clock, ttl_s=1), manager(clock, ttl_s=1, pin=False)
    for models in (pinned, unpinned):
        await models.ensure_loaded("")
        clock.now += 2
    assert pinned.evict_expired() == []
    assert unpinned.evict_expired() == ["a"]


async def test_lru_beyond_cap_never_evicts_a_model_in_use() -> None:
    clock = Clock()
    models = manager(clock, cap=2, pin=False)
    await models.acquire("a")
    clock.now += 1
    await models.ensure_loaded("b")
    clock.now += 1
    await models.ensure_loaded("c")  # over cap: b is the LRU idle model (a is in use)
    assert models.resident_ids == ["a", "c"]
    clock.now += 1
    await models.ensure_loaded("d")  # c is idle and least recent apart from a (in use)
    assert models.resident_ids == ["a", "d"]


async def test_cap_may_be_exceeded_when_every_model_is_in_use() -> None:
    models = manager(Clock(), cap=1, pin=False)
    await models.acquire("a")
    await models.acquire("b")
    assert models.resident_ids == ["a", "b"]


async def test_concurrent_loads_of_one_model_load_it_once() -> None:
    models = manager(Clock())
    results = await asyncio.gather(*(models.ensure_loaded("b") for _ in range(5)))
    assert models.load_counts["b"] == 1
    assert sum(loaded_now for _, loaded_now in results) == 1
    assert len({id(model) for model, _ in results}) == 1


async def test_unload_refuses_models_in_use_and_reports_residency() -> None:
    models = manager(Clock())
    await models.acquire("b")
    with pytest.raises(ModelInUse, match="used by 1 session"):
        await models.unload("b")
    models.release("b")
    assert await models.unload("b") is True
    assert await models.unload("b") is False
    status = {s.spec.id: s for s in models.status()}
    assert not status["b"].resident and status["b"].load_ms > 0


async def test_unknown_model_names_the_catalog() -> None:
    with pytest.raises(ModelNotFound, match=r"unknown model 'zzz'.*a, b, c, d"):
        await manager(Clock()).acquire("zzz")


async def test_missing_piper_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "voices" / "nobody.onnx"
    spec = ModelSpec(id="nobody", adapter="piper", path=str(missing))
    models = ModelManager(
        {"nobody": spec}, "nobody", ThreadPoolExecutor(1), ttl_s=1, resident_cap=1
    )
    with pytest.raises(ModelNotFound, match=re.escape(str(missing))):
        await models.ensure_loaded("nobody")
    assert models.resident_ids == []


def test_unknown_adapter_lists_installed_ones() -> None:
    with pytest.raises(ModelNotFound, match=r"unknown adapter 'nope'.*mock, piper"):
        create_adapter(ModelSpec(id="x", adapter="nope"))
