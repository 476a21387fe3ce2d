"""bench/load.py's pure parts: the jitter-buffer underrun rule and the "first limit" rule."""

from __future__ import annotations

from typing import Any

import pytest

from bench.crowd import end_offset
from bench.limits import LIMITS, SYMPTOMS, first_reached
from bench.playout import Interruption, late_frames, timelines, underruns


def test_frames_in_real_time_or_ahead_are_never_late() -> None:
    assert late_frames([i * 0.02 for i in range(50)]) == 0
    assert late_frames([0.0] * 50) == 0  # a burst sent ahead of real time
    assert late_frames([]) == 0


def test_a_stall_longer_than_the_buffer_makes_the_frames_after_it_late() -> None:
    arrivals = [0.00, 0.02, 0.04, 0.06, 0.08, 0.25, 0.25, 0.25, 0.25]
    # Frame i is due at 0.06 + 0.02 i: frames 5..8 (due 0.16..0.22) all came at 0.25.
    assert late_frames(arrivals) == 4
    assert late_frames(arrivals, buffer_s=0.2) == 0
    # Due at 0.06 + 0.02 x 5 = 0.16: arriving exactly then is in time.
    assert late_frames([0.0, 0.0, 0.0, 0.0, 0.0, 0.16]) == 0
    assert late_frames([0.0, 0.0, 0.0, 0.0, 0.0, 0.1601]) == 1


def test_a_pause_and_resume_restart_the_timeline() -> None:
    # Three frames, a pause, then frames buffered during it (0.5) and a resume at 1.0.
    arrivals = [0.0, 0.02, 0.04, 0.5, 0.5, 1.09, 1.13]
    marks = [Interruption("pause", 0.06, 3), Interruption("resume", 1.0, 3)]
    assert timelines(arrivals, marks) == [(arrivals[:3], None), (arrivals[3:], 1.0)]
    # After the resume, playout starts at 1.06: due 1.06, 1.08, 1.10, 1.12; only 1.13 is late
    # (timed from the buffered frames' arrival instead, 1.09 would be late too).
    assert underruns(arrivals, marks) == 1
    # Read as one timeline, the paused gap would make the last four frames late.
    assert underruns(arrivals) == 4


def test_frames_after_a_cancel_or_an_unresumed_pause_are_never_played() -> None:
    arrivals = [0.0, 0.02, 0.9, 1.5]
    cancel = Interruption("cancel", 0.05, 2)
    assert underruns(arrivals, [cancel]) == 0
    assert underruns(arrivals, [Interruption("pause", 0.05, 2)]) == 0
    # Nothing resumes a cancelled reply.
    assert timelines(arrivals, [cancel, Interruption("resume", 0.95, 2)]) == [(arrivals[:2], None)]
    assert underruns(arrivals) == 2


def test_staggered_ends_spread_over_two_seconds_and_simultaneous_ones_coincide() -> None:
    assert {end_offset(i, 8, "simultaneous") for i in range(8)} == {0}
    offsets = [end_offset(i, 8, "staggered") for i in range(8)]
    assert offsets == [0, 12, 25, 38, 50, 62, 75, 88]  # ticks of 20 ms: 0 .. 1.75 s


def row(sessions: int, **values: Any) -> dict[str, Any]:
    """A bench/load.py summary row with quiet defaults."""
    usage = {
        "machine": {"pinned_share": values.pop("machine", 0.0)},
        "orchestrator": {"cpu": {"pinned_share": 0.0}, "loop": {"pinned_share": 0.0}},
        "worker0": {"cpu": {"pinned_share": values.pop("worker", 0.0)}, "loop": {}},
        "bench": {"cpu": {"pinned_share": 0.0}, "loop": {"pinned_share": 0.0}},
    }
    base = {
        "sessions": sessions,
        "asr_queue_ms_p95": 0.0,
        "first_frame_ms_p95": 350.0,
        "ttfa_ms_p50": 600.0,
        "ttfa_ms_p95": 650.0,
        "bench_late_ms_max": 5.0,
        "errors": 0,
        "replies": 10,
        "underrun_replies": 0,
        "usage": usage,
    }
    return base | values


def test_the_first_limit_is_the_one_reached_at_the_smallest_n() -> None:
    rows = [row(4, machine=0.5), row(1), row(2, machine=0.3)]
    assert first_reached(rows, LIMITS) == {
        "sessions": 2,
        "reached": ["machine_cpu"],
        "values": {"machine_cpu": 0.3},
    }
    rows = [row(1), row(2, asr_queue_ms_p95=400.0), row(4, machine=0.9, asr_queue_ms_p95=900.0)]
    reached = first_reached(rows, LIMITS)
    assert reached is not None
    assert (reached["sessions"], reached["reached"]) == (2, ["asr_queue"])
    assert first_reached([row(1), row(2, machine=0.2, worker=0.2)], LIMITS) is None
    assert first_reached([], LIMITS) is None


@pytest.mark.parametrize(("p95", "reached"), [(600.0, False), (700.0, True)])
def test_the_tts_first_frame_limit_is_growth_over_the_smallest_n(p95: float, reached: bool) -> None:
    # The single session's 350 ms is the end-of-turn wait, not TTS: only growth counts.
    result = first_reached([row(1), row(8, first_frame_ms_p95=p95)], LIMITS)
    assert (result is not None) is reached
    if result is not None:
        assert result["reached"] == ["tts_first_frame"]
        assert result["values"] == {"tts_first_frame": p95 - 350.0}


def test_symptoms_errors_underruns_and_ttfa() -> None:
    rows = [row(1), row(4, underrun_replies=1), row(8, errors=2, ttfa_ms_p95=1200.0)]
    assert first_reached(rows, SYMPTOMS) == {
        "sessions": 4,
        "reached": ["underruns"],
        "values": {"underruns": 0.1},
    }
    reached = first_reached(rows[:1] + rows[2:], SYMPTOMS)
    assert reached is not None
    assert reached["reached"] == ["errors", "ttfa"]


def test_the_loop_lag_between_two_scrapes_comes_from_the_histogram_difference() -> None:
    from bench.load import lag_buckets, lag_summary

    def scrape(counts: list[int]) -> str:
        bounds = ["0.005", "0.05", "0.1", "0.2", "+Inf"]
        lines = ["# HELP voicefleet_event_loop_lag_seconds How late"]
        lines += [
            f'voicefleet_event_loop_lag_seconds_bucket{{le="{b}"}} {float(c)}'
            for b, c in zip(bounds, counts, strict=True)
        ]
        lines.append(f"voicefleet_event_loop_lag_seconds_count {float(counts[-1])}")
        return "\n".join(lines)

    before = lag_buckets(scrape([50, 60, 60, 60, 60]))
    # 100 timers since: 70 under 5 ms, 10 more under 50 ms, 15 under 100 ms, 5 under 200 ms.
    after = lag_buckets(scrape([120, 140, 155, 160, 160]))
    assert lag_summary(before, after) == {
        "loop_lag_timers": 100,
        "loop_lag_over_50ms": 0.2,
        "loop_lag_ms_p95_under": 100,
    }
    assert lag_summary(after, after)["loop_lag_timers"] == 0
