"""Which limit a load run reaches first: rules over bench/load.py's per-N rows, not judgement.

A row is one (workers, mode, N) summary (bench/load.py `summarize`); `usage` in it is
bench/usage.py's summary. A limit holds in a row when its value is at or above its threshold;
`first_reached` names the smallest N where any holds, and every limit that holds there (in the
order below). Resources (LIMITS) say what ran out; symptoms (SYMPTOMS) say what a user notices.
Both compare a row with the smallest N's row (the baseline) where a level alone says nothing
(the first-frame time includes the end-of-turn wait, which the load does not change).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
PINNED_SHARE = 0.25  # a quarter of the run's samples at the ceiling


@dataclass(frozen=True)
class Limit:
    """A named rule: value(row, baseline) >= threshold."""

    name: str
    rule: str
    value: Callable[[Row, Row], float | None]
    threshold: float


def _pinned(row: Row, process: str, series: str) -> float | None:
    usage = row.get("usage", {}).get(process)
    return None if usage is None else float(usage[series]["pinned_share"])


def _workers_pinned(row: Row, _: Row) -> float | None:
    shares = [
        float(usage["cpu"]["pinned_share"])
        for name, usage in row.get("usage", {}).items()
        if name.startswith("worker")
    ]
    return max(shares, default=None)


def _above(key: str, base_key: str) -> Callable[[Row, Row], float | None]:
    def growth(row: Row, baseline: Row) -> float | None:
        value, base = row.get(key), baseline.get(base_key)
        return None if value is None or base is None else float(value) - float(base)

    return growth


def _machine(row: Row, _: Row) -> float | None:
    machine = row.get("usage", {}).get("machine")
    return None if machine is None else float(machine["pinned_share"])


LIMITS = (
    Limit("machine_cpu", "machine CPU >= 95 % of all cores in >= 25 % of samples", _machine, 0.25),
    Limit(
        "asr_queue",
        "ASR queueing (asr_queue_ms) p95 >= 250 ms",
        lambda r, _: r.get("asr_queue_ms_p95"),
        250.0,
    ),
    Limit(
        "tts_first_frame",
        "TTS first frame (first_frame_ms) p95 >= 300 ms above the smallest N's p95",
        _above("first_frame_ms_p95", "first_frame_ms_p95"),
        300.0,
    ),
    Limit(
        "tts_worker_cpu",
        "a worker at >= 95 % of its ceiling in >= 25 % of samples",
        _workers_pinned,
        PINNED_SHARE,
    ),
    Limit(
        "orchestrator_loop",
        "the orchestrator's event loop >= 95 % of a core in >= 25 % of samples",
        lambda r, _: _pinned(r, "orchestrator", "loop"),
        PINNED_SHARE,
    ),
    Limit(
        "bench_loop",
        "this bench's event loop >= 95 % of a core in >= 25 % of samples (numbers suspect)",
        lambda r, _: _pinned(r, "bench", "loop"),
        PINNED_SHARE,
    ),
    Limit(
        "bench_timer",
        "a microphone tick sent >= 100 ms late (the clients fell behind real time)",
        lambda r, _: r.get("bench_late_ms_max"),
        100.0,
    ),
)
SYMPTOMS = (
    Limit(
        "errors",
        "an error event, failed session, missing reply or reply problem",
        lambda r, _: r.get("errors"),
        1.0,
    ),
    Limit(
        "underruns",
        ">= 5 % of replies with an underrun",
        lambda r, _: r["underrun_replies"] / r["replies"] if r.get("replies") else None,
        0.05,
    ),
    Limit(
        "ttfa",
        "client TTFA p95 >= 500 ms above the smallest N's p50",
        _above("ttfa_ms_p95", "ttfa_ms_p50"),
        500.0,
    ),
)


def first_reached(rows: Sequence[Row], limits: Sequence[Limit]) -> Row | None:
    """The smallest N where a limit holds: {"sessions", "reached": names, "values"}; or None."""
    ordered = sorted(rows, key=lambda row: int(row["sessions"]))
    if not ordered:
        return None
    baseline = ordered[0]
    for row in ordered:
        reached = {}
        for limit in limits:
            value = limit.value(row, baseline)
            if value is not None and value >= limit.threshold:
                reached[limit.name] = round(value, 3)
        if reached:
            return {"sessions": row["sessions"], "reached": list(reached), "values": reached}
    return None
