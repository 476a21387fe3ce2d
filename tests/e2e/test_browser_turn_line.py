"""The page's turn line in a real browser: after a spoken turn it says how the turn ended (the
policy and verdict) and how long the silence before it was, as the metrics event reported."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_browser import (
    open_page,
    page_state,
    require_chromium,
    wait_for,
    write_mic_wav,
)
from tests.integration.conftest import Stack

UTTERANCE = "Turn off the lights in the kitchen."


@pytest.fixture
def semantic_stack(tmp_path: Path, redis_url: str) -> Iterator[Stack]:
    """One Piper worker and one orchestrator whose judge picks the end of the turn."""
    built = Stack(tmp_path, redis_url)
    try:
        built.worker()
        # A long fallback hangover: on a loaded machine the speculative transcript can take
        # longer than 600 ms (466 ms of ASR once in CI), and then the silence, not the judge,
        # would end the turn; this test is about what the page shows of the judge's decision.
        pipeline = {"end_of_turn": {"policy": "semantic"}, "vad": {"hangover_ms": 3000}}
        built.orchestrator(pipeline=pipeline)
        yield built
    finally:
        built.stop()


@pytest.fixture
def mic_wav(tmp_path: Path) -> Path:
    """The fake microphone speaking UTTERANCE."""
    return write_mic_wav(tmp_path / "mic.wav", UTTERANCE)


async def test_the_turn_line_shows_the_end_of_turn_decision(
    semantic_stack: Stack, mic_wav: Path
) -> None:
    chromium = require_chromium()
    async with open_page(chromium, mic_wav) as page:
        await page.goto(semantic_stack.orchestrators[0].url + "/")
        await page.click("#connect")
        await wait_for(page, "vf.connected && vf.state === 'listening'", 10)
        await wait_for(page, "vf.metrics.length > 0", 30)
        metrics = (await page_state(page))["metrics"][0]
        line = await page.text_content("#metrics")
    assert line is not None
    how = metrics["end_of_turn"]
    assert re.fullmatch(r"semantic/(complete|unsure|incomplete)", how), metrics
    waited = math.floor(metrics["endpoint_ms"] + 0.5)  # Math.round
    assert line.startswith(f"turn {metrics['turn']}: end of turn: {how} after {waited} ms · "), line
    # The wait is its own item now, not also listed as "endpoint".
    assert "endpoint" not in line and "time to first audio" in line, line
