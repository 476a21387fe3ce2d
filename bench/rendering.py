"""A worker's rendering of one text over gRPC, and the silence and clicks in it (10 ms blocks)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicefleet.audio.pcm import s16le_to_float
from voicefleet.rpc.tts_client import TTSClient

RATE = 48_000
BLOCK = RATE // 100  # 10 ms
QUIET_DBFS = -45.0
FloatArray = npt.NDArray[np.float32]


@dataclass
class Rendering:
    """One Synthesize call's audio, where each segment's frames start, and frame lateness."""

    audio: FloatArray
    spans: list[tuple[int, int]]  # each segment's text span, from its frames
    segment_starts: list[int]  # sample index of each segment's first frame
    first_frame_ms: float
    late_ms: float


def tokens(text: str, size: int = 4) -> list[str]:
    """The text as an LLM streams it: a few characters a chunk."""
    return [text[at : at + size] for at in range(0, len(text), size)]


async def render(client: TTSClient, sid: str, chunks: list[str]) -> Rendering:
    """Speak `chunks` in a new session; every frame, when it arrived, and its segment."""
    await client.start_session(sid)
    began = time.perf_counter()
    pcm: list[bytes] = []
    spans: list[tuple[int, int]] = []
    starts: list[int] = []
    arrivals: list[float] = []
    async for frame in client.synthesize(sid, chunks):
        arrivals.append(time.perf_counter())
        if frame.segment_index == len(starts):
            starts.append(len(pcm) * len(frame.pcm) // 2)
            spans.append((frame.text_start, frame.text_end))
        pcm.append(frame.pcm)
    await client.end_session(sid)
    due = arrivals[0] + 0.02 * np.arange(len(arrivals))
    late = max(0.0, float(np.max(np.array(arrivals) - due)) * 1000)
    audio = s16le_to_float(b"".join(pcm))
    return Rendering(audio, spans, starts, (arrivals[0] - began) * 1000, late)


def quiet_blocks(audio: FloatArray) -> npt.NDArray[np.bool_]:
    """Per 10 ms block: RMS under QUIET_DBFS."""
    blocks = audio[: audio.size // BLOCK * BLOCK].reshape(-1, BLOCK).astype(np.float64)
    rms = np.sqrt(np.mean(blocks * blocks, axis=1) + 1e-20)
    quiet: npt.NDArray[np.bool_] = 20 * np.log10(rms) < QUIET_DBFS
    return quiet


def run_bounds(quiet: npt.NDArray[np.bool_], first: int, last: int) -> tuple[int, int] | None:
    """The longest quiet run (first and last block) overlapping blocks [first, last]."""
    best: tuple[int, int] | None = None
    for index in range(max(first, 0), min(last, quiet.size - 1) + 1):
        if quiet[index]:
            start, end = index, index
            while start > 0 and quiet[start - 1]:
                start -= 1
            while end + 1 < quiet.size and quiet[end + 1]:
                end += 1
            if best is None or end - start > best[1] - best[0]:
                best = (start, end)
    return best


def run_ms(bounds: tuple[int, int] | None) -> float:
    """A run's length in ms (0 for none)."""
    return 0.0 if bounds is None else (bounds[1] - bounds[0] + 1) * 10.0


def speech_bounds(quiet: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """The first and the last voiced block."""
    voiced = np.flatnonzero(~quiet)
    return int(voiced[0]), int(voiced[-1])


def measure_join(cut: FloatArray, at: int, whole: FloatArray) -> dict[str, float]:
    """A join in `cut` (inside the 20 ms frame from sample `at`), against `whole`.

    join_ms: the quiet run touching the join; whole_here_ms: the longest quiet run in the whole
    rendering within 120 ms of where the same words end there; click: the largest step near the
    join over the 99.9th percentile step of the stream (below 1: no step the speech lacks).
    """
    quiet = quiet_blocks(cut)
    join_block = at // BLOCK  # the join lies in this frame: blocks join_block..join_block+1
    gap = run_bounds(quiet, join_block - 1, join_block + 2)
    last_voiced = gap[0] - 1 if gap is not None else join_block
    # Where the same words end in the whole rendering: as long after its speech begins.
    whole_quiet = quiet_blocks(whole)
    here = speech_bounds(whole_quiet)[0] + last_voiced - speech_bounds(quiet)[0]
    steps = np.abs(np.diff(cut))
    near = steps[max(at - RATE // 200, 0) : at + RATE // 40]
    return {
        "join_ms": run_ms(gap),
        "whole_here_ms": run_ms(run_bounds(whole_quiet, here - 12, here + 12)),
        "click": float(near.max() / np.percentile(steps, 99.9)),
    }


def longest_inner_run_ms(quiet: npt.NDArray[np.bool_]) -> float:
    """The longest quiet run between the first and the last voiced block."""
    begin, end = speech_bounds(quiet)
    inner = quiet[begin : end + 1]
    return run_ms(run_bounds(inner, 0, inner.size - 1))
