"""Choosing a worker: language and capabilities, then model availability, preferring a worker
with the model resident, then the least loaded, then the best median first-audio latency.
Workers that just failed are skipped for a cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.fleet.view import FleetView
from voicefleet.rpc.registry import WorkerRecord, speaks


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
