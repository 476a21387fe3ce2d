"""bench/turns.py's pure parts: how pauses are spread over the corpus, and what counts as a
cut-in in the goal's measure."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.turns import PAUSED_FINISHED_SOUNDING, PAUSED_UNFINISHED, PAUSES_S, pause_for, summarize


def test_each_kind_gets_every_pause_length_equally_often_over_two_voices() -> None:
    for pairs in (PAUSED_UNFINISHED, PAUSED_FINISHED_SOUNDING):
        group = len(pairs)
        pauses = Counter(pause_for(i, v, group) for v in (0, 1) for i in range(group))
        assert set(pauses) == set(PAUSES_S)
        assert len(set(pauses.values())) == 1, pauses


def row(kind: str, cut_in: bool, ttfa_ms: float | None = 300.0) -> dict[str, Any]:
    return {"kind": kind, "cut_in": cut_in, "ttfa_ms": ttfa_ms, "first_frame_ms": [100.0]}


def test_the_cut_in_rate_is_over_pauses_inside_a_sentence_and_the_rest_is_reported_apart() -> None:
    rows = [
        row("complete", False, 300.0),
        row("complete", True, 250.0),  # a reply before the end: premature, not a cut-in
        row("paused_unfinished", True),
        row("paused_unfinished", False),
        row("paused_unfinished", False),
        row("paused_unfinished", False),
        row("paused_finished", True),
        row("paused_finished", True),
    ]
    summary = summarize(rows)
    assert summary["cut_in_rate"] == 0.25
    assert summary["cut_in_rate_afterthought"] == 1.0
    assert summary["cut_in_rate_all"] == 0.5
    assert summary["premature_rate"] == 0.5
    assert summary["ttfa_ms_p50"] == 275.0
    assert (summary["complete"], summary["paused"]) == (2, 6)
