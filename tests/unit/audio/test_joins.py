from collections.abc import Iterator

import numpy as np
import pytest

from voicefleet.audio.joins import trim_join_edges

RATE = 16_000
MS = RATE // 1000


def tone(ms: int, level: float = 0.5) -> np.ndarray:
    t = np.arange(ms * MS) / RATE
    return (level * np.sin(2 * np.pi * 200 * t)).astype(np.float32)


def hush(ms: int, level: float = 1e-4) -> np.ndarray:
    """A synthesis's padding: near silence, not digital zero."""
    return (level * np.random.default_rng(ms).standard_normal(ms * MS)).astype(np.float32)


# 60 ms of padding, speech with a 100 ms pause inside it, 200 ms of padding.
SEGMENT = np.concatenate([hush(60), tone(300), hush(100), tone(200), hush(200)])


def trimmed(
    chunks: list[np.ndarray], *, lead: bool, trail: bool, keep_ms: float = 15
) -> np.ndarray:
    out = list(trim_join_edges(chunks, RATE, lead=lead, trail=trail, keep_ms=keep_ms))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def split(audio: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    cuts = np.cumsum(sizes)
    return [part for part in np.split(audio, cuts[cuts < audio.size]) if part.size]


@pytest.mark.parametrize(
    ("lead", "trail", "removed_ms"),
    [(False, False, 0), (True, False, 60 - 15), (False, True, 200 - 15), (True, True, 230)],
)
def test_only_the_edges_asked_for_are_trimmed_to_keep_ms(
    lead: bool, trail: bool, removed_ms: int
) -> None:
    out = trimmed([SEGMENT], lead=lead, trail=trail)
    assert abs(out.size - (SEGMENT.size - removed_ms * MS)) <= MS
    if not (lead or trail):
        assert np.array_equal(out, SEGMENT)


def test_a_pause_inside_the_speech_stays_whole() -> None:
    out = trimmed([SEGMENT], lead=True, trail=True)
    quiet = np.abs(out) < 1e-3
    longest, run = 0, 0
    for value in quiet:
        run = run + 1 if value else 0
        longest = max(longest, run)
    assert longest >= 99 * MS


def test_trimmed_edges_fade_so_no_sample_jumps() -> None:
    loud_edges = np.concatenate([hush(50, 0.004), tone(200), hush(50, 0.004)])
    out = trimmed([loud_edges], lead=True, trail=True)
    assert abs(out[0]) < 1e-4 and abs(out[-1]) < 1e-4


@pytest.mark.parametrize("seed", range(5))
def test_chunking_does_not_change_the_result(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = [int(size) for size in rng.integers(1, 4000, size=64)]
    whole = trimmed([SEGMENT], lead=True, trail=True)
    assert np.array_equal(trimmed(split(SEGMENT, sizes), lead=True, trail=True), whole)


def test_speech_passes_as_it_arrives_only_trailing_quiet_is_held() -> None:
    chunks = [hush(60), tone(300), hush(100), tone(200), hush(200)]
    pulled: list[int] = []

    def synthesis() -> Iterator[np.ndarray]:
        for chunk in chunks:
            pulled.append(chunk.size)
            yield chunk

    released = [0] * (len(chunks) + 1)  # samples out while the trimmer had k chunks in
    for piece in trim_join_edges(synthesis(), RATE, lead=True, trail=True):
        released[len(pulled)] += piece.size
    assert released[1] == 0  # padding only: held as a possible lead-in
    # The speech with its lead-in, less the last 3 ms (they may need a fade)...
    assert abs(released[2] - (15 + 300 - 3) * MS) <= 2
    # ... which leave with the pause; the pause is held until speech follows it.
    assert released[3] == 3 * MS
    assert abs(released[4] - (100 + 200 - 3) * MS) <= 2
    assert released[5] == (3 + 15) * MS  # the end: 15 ms of the trailing silence


def test_a_silent_segment_leaves_nothing_at_a_join() -> None:
    assert trimmed([hush(300)], lead=True, trail=True).size == 0
    assert trimmed([np.zeros(RATE, dtype=np.float32)], lead=True, trail=False).size == 0
