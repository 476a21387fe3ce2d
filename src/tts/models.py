"""The model manager: which models are resident, who uses them, and when they go.

- Models load on demand (and the default at start-up), each followed by a warm-up synthesis.
- Sessions hold a reference; a model with references is never evicted or unloaded.
- Idle models leave after `ttl_s`; beyond `resident_cap`, the least recently used idle model
  leaves first. Two concurrent requests for one model load it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

from voicefleet.tts.adapters import ModelSpec, TTSAdapter, create_adapter
from voicefleet.tts.errors import (
    ModelInUse,
    ModelNotFound,
    ModelPinned,
    SynthesisFailed,
    WorkerError,
)
from voicefleet.tts.metrics import WorkerMetrics

log = logging.getLogger(__name__)

AdapterFactory = Callable[[ModelSpec], TTSAdapter]


@dataclass
class ResidentModel:
    """A loaded model and its bookkeeping."""

    spec: ModelSpec
    adapter: TTSAdapter
    load_ms: float
    refcount: int = 0
    last_used: float = 0.0


@dataclass(frozen=True)
class ModelStatus:
    """A snapshot of one catalog entry for ListModels and the registry."""

    spec: ModelSpec
    resident: bool
    refcount: int
    native_sample_rate: int
    load_ms: float


class ModelManager:
    """Loads, shares and evicts models from a fixed catalog."""

    def __init__(
        self,
        catalog: Mapping[str, ModelSpec],
        default_model_id: str,
        executor: Executor,
        *,
        ttl_s: float,
        resident_cap: int,
        pin_default: bool = True,
        adapter_factory: AdapterFactory = create_adapter,
        clock: Callable[[], float] = time.monotonic,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.catalog = dict(catalog)
        self.default_model_id = default_model_id
        self.ttl_s = ttl_s
        self.resident_cap = resident_cap
        self.pinned = {default_model_id} if pin_default else set()
        self.load_counts: Counter[str] = Counter()
        self._executor = executor
        self._factory = adapter_factory
        self._clock = clock
        self._metrics = metrics or WorkerMetrics()
        self._resident: dict[str, ResidentModel] = {}
        self._loading: dict[str, asyncio.Future[ResidentModel]] = {}
        self._last_load_ms: dict[str, float] = {}

    @property
    def voices(self) -> dict[str, str]:
        """Public voice name -> the id of the model that speaks it."""
        return {voice: spec.id for spec in self.catalog.values() for voice in spec.voices}

    def resolve(self, model_id: str, voice: str = "") -> ModelSpec:
        """The catalog entry for an id ('' means the model of the public `voice`, if it is
        one, else the default); NOT_FOUND otherwise."""
        key = model_id or self.voices.get(voice, "") or self.default_model_id
        if key not in self.catalog:
            known = ", ".join(sorted(self.catalog))
            raise ModelNotFound(f"unknown model {key!r} (this worker serves: {known})")
        return self.catalog[key]

    @property
    def resident_ids(self) -> list[str]:
        """Ids of the models in memory."""
        return sorted(self._resident)

    def adapter(self, model_id: str) -> TTSAdapter:
        """The resident adapter for a model a session holds (sessions keep it resident)."""
        model = self._resident.get(model_id)
        if model is None:
            raise ModelNotFound(f"model {model_id!r} is not resident")
        model.last_used = self._clock()
        return model.adapter

    async def ensure_loaded(self, model_id: str) -> tuple[ResidentModel, bool]:
        """Load once (however many callers) and warm up; also say whether it loaded now."""
        spec = self.resolve(model_id)
        if (model := self._resident.get(spec.id)) is not None:
            model.last_used = self._clock()
            return model, False
        pending = self._loading.get(spec.id)
        if pending is not None:
            return await asyncio.shield(pending), False
        future: asyncio.Future[ResidentModel] = asyncio.get_running_loop().create_future()
        self._loading[spec.id] = future
        try:
            model = await self._load(spec)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            self._loading.pop(spec.id, None)
        future.set_result(model)
        self._resident[spec.id] = model
        self._enforce_cap(keep=spec.id)
        return model, True

    async def _load(self, spec: ModelSpec) -> ResidentModel:
        adapter = self._factory(spec)
        started = time.perf_counter()

        def load_and_warm() -> None:
            adapter.load()
            adapter.warm_up()

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, load_and_warm)
        except WorkerError:
            raise
        except Exception as error:
            raise SynthesisFailed(f"loading model {spec.id!r} failed: {error}") from error
        load_ms = (time.perf_counter() - started) * 1000
        self.load_counts[spec.id] += 1
        self._metrics.model_loads.labels(model=spec.id).inc()
        self._metrics.model_load_seconds.labels(model=spec.id).observe(load_ms / 1000)
        self._last_load_ms[spec.id] = load_ms
        log.info("model %s loaded and warmed up in %.0f ms", spec.id, load_ms)
        return ResidentModel(spec, adapter, load_ms, last_used=self._clock())

    async def acquire(self, model_id: str) -> ResidentModel:
        """Load if needed and take a reference for a session."""
        model, _ = await self.ensure_loaded(model_id)
        model.refcount += 1
        model.last_used = self._clock()
        return model

    def release(self, model_id: str) -> None:
        """Drop a session's reference; eviction decides later."""
        model = self._resident.get(model_id)
        if model is not None and model.refcount > 0:
            model.refcount -= 1
            model.last_used = self._clock()

    async def unload(self, model_id: str) -> bool:
        """Unload now; FAILED_PRECONDITION while sessions use it or for the pinned default
        (a session naming no model would pay its reload). False if not resident."""
        spec = self.resolve(model_id)
        if spec.id in self.pinned:
            raise ModelPinned(
                f"model {spec.id!r} is this worker's pinned default model and stays resident "
                "(model_manager.pin_default)"
            )
        model = self._resident.get(spec.id)
        if model is None:
            return False
        if model.refcount > 0:
            raise ModelInUse(f"model {spec.id!r} is used by {model.refcount} session(s)")
        self._evict(spec.id, "unload", "unload requested")
        return True

    async def reload(self, model_id: str) -> ResidentModel:
        """Load a fresh copy from disk and swap it in; references carry over."""
        spec = self.resolve(model_id)
        fresh = await self._load(spec)
        old = self._resident.get(spec.id)
        if old is not None:
            fresh.refcount = old.refcount
        self._resident[spec.id] = fresh
        return fresh

    def evict_expired(self) -> list[str]:
        """Evict idle, unpinned models unused for longer than ttl_s."""
        now = self._clock()
        expired = [
            model_id
            for model_id, model in self._resident.items()
            if model.refcount == 0
            and model_id not in self.pinned
            and now - model.last_used >= self.ttl_s
        ]
        for model_id in expired:
            self._evict(model_id, "ttl", f"idle for {self.ttl_s:g} s")
        return expired

    def _enforce_cap(self, keep: str) -> None:
        while len(self._resident) > self.resident_cap:
            idle = [
                (model.last_used, model_id)
                for model_id, model in self._resident.items()
                if model.refcount == 0 and model_id != keep and model_id not in self.pinned
            ]
            if not idle:
                log.warning(
                    "resident cap %d exceeded: every other model is in use", self.resident_cap
                )
                return
            self._evict(
                min(idle)[1],
                "cap",
                f"least recently used beyond resident_cap={self.resident_cap}",
            )

    def _evict(self, model_id: str, kind: str, reason: str) -> None:
        """Drop a model; `kind` (ttl, cap, unload) is the metric's label, `reason` the log's."""
        model = self._resident.pop(model_id)
        started = time.perf_counter()
        model.adapter.unload()
        self._metrics.model_evictions.labels(model=model_id, reason=kind).inc()
        self._metrics.model_unload_seconds.labels(model=model_id).observe(
            time.perf_counter() - started
        )
        log.info("model %s evicted: %s", model_id, reason)

    def status(self) -> list[ModelStatus]:
        """Every catalog entry with its residency."""
        out = []
        for model_id, spec in sorted(self.catalog.items()):
            model = self._resident.get(model_id)
            out.append(
                ModelStatus(
                    spec=spec,
                    resident=model is not None,
                    refcount=model.refcount if model else 0,
                    native_sample_rate=model.adapter.sample_rate if model else 0,
                    load_ms=self._last_load_ms.get(model_id, 0.0),
                )
            )
        return out

    async def run_eviction(self, interval_s: float) -> None:
        """Evict expired models every interval until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.evict_expired()
