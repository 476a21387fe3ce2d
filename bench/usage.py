"""CPU and memory of a benchmark's processes, sampled with psutil every 0.5 s in a thread.

Units: the machine's CPU is a percentage of all its cores (100 = every core busy); a process's
CPU and its main thread's (`loop`: the asyncio event loop of the orchestrator, the workers and
the bench) are percentages of one core, as `top` shows them (a process may exceed 100). A
series is `pinned` in a sample when it is at 95 % of its ceiling or more; `pinned_share` is the
fraction of the window's samples where it was. `tracked` is the sampled processes together (%
of all cores): on a shared machine, `machine` minus `tracked` is somebody else's load.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil

PERIOD_S = 0.5
PINNED = 0.95


@dataclass
class Sample:
    """One reading: when, the machine's CPU, and per process its CPU, its loop's, its RSS."""

    at: float
    machine: float
    cpu: dict[str, float] = field(default_factory=dict)
    loop: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)


def _series(values: list[float], ceiling: float) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p95": 0.0, "max": 0.0, "pinned_share": 0.0}
    pinned = sum(1 for v in values if v >= PINNED * ceiling) / len(values)
    return {
        "mean": round(float(np.mean(values)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
        "max": round(max(values), 1),
        "pinned_share": round(pinned, 3),
    }


class UsageSampler:
    """Samples the named processes (and the whole machine) until stopped."""

    def __init__(
        self, pids: dict[str, int], ceilings: dict[str, float], period_s: float = PERIOD_S
    ) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        # A process's CPU ceiling in % of one core (what it can use at most); default all cores.
        self.ceilings = ceilings
        self.cores = psutil.cpu_count() or 1
        self.period_s = period_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage", daemon=True)

    def __enter__(self) -> UsageSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _read(self) -> tuple[float, dict[str, tuple[float, float, float]]]:
        times: dict[str, tuple[float, float, float]] = {}
        for name, process in self.processes.items():
            try:
                with process.oneshot():
                    cpu = process.cpu_times()
                    main = next((t for t in process.threads() if t.id == process.pid), None)
                    loop = main.user_time + main.system_time if main else 0.0
                    rss = process.memory_info().rss / 2**20
                times[name] = (cpu.user + cpu.system, loop, rss)
            except psutil.Error:
                continue
        return time.monotonic(), times

    def _run(self) -> None:
        psutil.cpu_percent(interval=None)
        before_at, before = self._read()
        while not self._stop.wait(self.period_s):
            machine = psutil.cpu_percent(interval=None)
            at, now = self._read()
            elapsed = max(at - before_at, 1e-6)
            sample = Sample(at=at, machine=machine)
            for name, (cpu, loop, rss) in now.items():
                if name in before:
                    sample.cpu[name] = 100 * (cpu - before[name][0]) / elapsed
                    sample.loop[name] = 100 * (loop - before[name][1]) / elapsed
                sample.rss_mb[name] = rss
            self.samples.append(sample)
            before_at, before = at, now

    def summary(self, began: float, ended: float) -> dict[str, object]:
        """Machine and per-process figures over the samples taken in [began, ended]."""
        window = [s for s in self.samples if began <= s.at <= ended]
        out: dict[str, object] = {
            "cores": self.cores,
            "samples": len(window),
            "machine": _series([s.machine for s in window], 100.0),
            # These processes together, in % of all cores: the rest of `machine` is others'.
            "tracked": _series([sum(s.cpu.values()) / self.cores for s in window], 100.0),
        }
        for name in self.processes:
            ceiling = self.ceilings.get(name, 100.0 * self.cores)
            rss = [s.rss_mb[name] for s in window if name in s.rss_mb]
            out[name] = {
                "cpu": _series([s.cpu[name] for s in window if name in s.cpu], ceiling),
                "loop": _series([s.loop[name] for s in window if name in s.loop], 100.0),
                "rss_peak_mb": round(max(rss), 1) if rss else 0.0,
            }
        return out
