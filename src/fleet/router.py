"""Choosing a worker: the public voice asked for, language and capabilities, then model
availability, preferring a worker with the model resident (a worker that must load it first
answers a load later: bench/engines.py measures it), then the least loaded, then the best
median first-audio latency.
Workers that just failed are skipped for a cool-down.

First-audio latency is what this client observed (text sent -> first frame back, network
included) over the last few replies on each worker, when it has any; else the worker's own
median from its record, which cannot see a slow or lossy link between the two.
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Iterable

from voicefleet.fleet.errors import NoWorkerAvailable, UnknownVoice
from voicefleet.fleet.view import FleetView
from voicefleet.rpc.registry import WorkerRecord, speaks

_OBSERVED = 20  # replies remembered per worker


class Router:
    """Chooses workers from a FleetView."""

    def __init__(self, fleet: FleetView) -> None:
        self.fleet = fleet
        self._failed: dict[str, float] = {}
        self._placed: dict[str, list[float]] = {}
        self._observed: dict[str, collections.deque[float]] = {}

    def observe(self, name: str, first_audio_ms: float) -> None:
        """A reply's first frame from this worker took `first_audio_ms` (as seen here)."""
        self._observed.setdefault(name, collections.deque(maxlen=_OBSERVED)).append(first_audio_ms)

    def first_audio_ms(self, worker: WorkerRecord) -> float | None:
        """The latency ranking uses: observed here when known, else the worker's own p50."""
        observed = self._observed.get(worker.name)
        if observed:
            return statistics.median(observed)
        return worker.load.first_audio_ms_p50

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
        self, language: str = "", model: str = "", exclude: Iterable[str] = (), voice: str = ""
    ) -> list[WorkerRecord]:
        """Usable workers, best first; NoWorkerAvailable (saying why) when there are none.

        A public `voice` (and no `model`) keeps the workers that offer it, each with the model
        that speaks it there; a voice no registered worker offers is UnknownVoice. A voice that
        is not a public name anywhere but comes with a model is the adapter's own voice name,
        for the worker to judge."""
        workers = list(self.fleet.workers.values())
        if not workers:
            raise NoWorkerAvailable("no TTS worker is registered")
        if voice and not model:
            offering = [w for w in workers if voice in w.voices]
            if not offering and not any(w.voices for w in workers):
                offering = workers  # a fleet without public names: the worker judges the voice
            elif not offering:
                known = sorted({v for w in workers for v in w.voices})
                raise UnknownVoice(
                    f"no TTS worker offers voice {voice!r} (the fleet offers: {', '.join(known)})"
                )
            workers = offering
        now = time.monotonic()
        cooldown = self.fleet.config.failure_cooldown_s
        cooling = {
            n: cooldown - (now - at) for n, at in self._failed.items() if now - at < cooldown
        }
        speaking = [w for w in workers if speaks(w.capabilities.languages, language)]
        if not speaking:
            raise NoWorkerAvailable(f"no registered TTS worker speaks {language or 'any language'}")
        usable = [w for w in speaking if w.name not in cooling and w.name not in set(exclude)]
        if not usable:
            waits = [cooling[w.name] for w in speaking if w.name in cooling]
            detail = f"; the first is back in {min(waits):.0f} s" if waits else ""
            raise NoWorkerAvailable(
                f"every TTS worker that speaks {language or 'any language'} failed just now "
                f"({len(speaking)} registered{detail})"
            )
        required = self.fleet.config.required_capabilities
        usable = [w for w in usable if all(getattr(w.capabilities, c, False) for c in required)]
        if model:
            usable = [w for w in usable if model in w.available_models]
        if not usable:
            raise NoWorkerAvailable(
                f"no TTS worker offers model {model or '(default)'} with {', '.join(required)}"
            )
        if not self.fleet.config.load_on_demand:
            usable = [w for w in usable if self.model_for(w, model, voice) in w.resident_models]
            if not usable:
                raise NoWorkerAvailable(
                    f"no TTS worker holds {f'voice {voice!r}' if voice else 'the model'} "
                    "in memory, and router.load_on_demand is off"
                )
        return sorted(usable, key=lambda w: self._rank(w, self.model_for(w, model, voice)))

    @staticmethod
    def model_for(worker: WorkerRecord, model: str, voice: str) -> str:
        """The model a worker would speak with: the one asked for, that of the public voice,
        else its default."""
        return model or worker.voices.get(voice, "") or worker.default_model

    def _rank(self, worker: WorkerRecord, wanted: str) -> tuple[bool, float, int, float, str]:
        load = worker.load
        sessions = load.active_sessions + self._pending(worker)
        occupancy = sessions / load.max_sessions if load.max_sessions else float(sessions)
        p50 = self.first_audio_ms(worker)
        p50 = p50 if p50 is not None else 1e9
        return (wanted not in worker.resident_models, occupancy, load.queue_depth, p50, worker.name)
