"""Joins benchmark: what a short first segment saves, and whether the ear can hear the join.

Runs, in one process and one run, on texts of many shapes (--passes times each):
- raw Piper in process (the bundled voice, 2 threads, as the worker loads it): time to its
  first chunk of the first segment the worker cuts vs of the whole text (its first sentence:
  what a server streaming Piper's chunks waits for), best of --rounds tries;
- two real `voicefleet worker` subprocesses over loopback gRPC: one cutting the first segment
  as --mode says (the rendering under test; it gets the text as 4-character tokens, like an
  LLM's, and its frames' spans are checked against the segmenter's), and one with
  first_segment.mode=sentence that gets the text whole (the reference).

At each join inside a sentence (after a word cut, or after a clause cut: reported apart) it
measures the silence (quiet 10 ms blocks under -45 dBFS touching the join) against the whole
rendering's at the same words, and clicks (bench/silence.py); per rendering, how late a frame
arrived behind a real-time playout from the first frame, and the words tiny.en gets wrong
(pooled WER against the text). Prints a table, then one JSON object as the last line.

    .venv/bin/python bench/joins.py [--mode words|clause] [--passes 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import print_result
from bench.silence import RATE, FloatArray, longest_inner_run_ms, measure_join, quiet_blocks
from bench.worker import THREADS, RawPiper
from tests.worker_process import WorkerProcess
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import edit_distance, normalize_words
from voicefleet.audio.pcm import s16le_to_float
from voicefleet.rpc.tts_client import TTSClient
from voicefleet.tts.segmenter import FirstSegment, Segment, TextSegmenter

TEXTS = [
    "Yes, of course.",
    "I can help you with that.",
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "I think that we should go to the park tomorrow morning with the kids.",
    "The package weighs 3.5 kg and costs about 1,000 dollars including shipping fees.",
    "Your appointment with Dr. Smith is at 10:30 on Tuesday morning at the main clinic.",
    "Could you tell me what time the train to Boston leaves tomorrow morning?",
    "We drove from New York to Salt Lake City in just under three days last summer.",
    "Our friendly neighborhood baker makes delicious fresh bread every single morning at dawn.",
    "The meeting has been moved to next Thursday because the manager is traveling abroad.",
    "I am going to need a few more minutes to finish the report for the client.",
    "Well, that depends on a few things. Tell me more about what you need.",
    "Hello there, how are you doing today? I hope the weather is nice where you are.",
]


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


def segments_of(text: str, rule: FirstSegment) -> list[Segment]:
    segmenter = TextSegmenter(first_segment=rule)
    return segmenter.push(text) + segmenter.flush()


def raw_times(raw: RawPiper, text: str, first: str, rounds: int) -> tuple[float, float]:
    """Best-of-rounds ms to Piper's first chunk: of the first segment, and of the whole text.

    Piper yields a chunk per sentence it finds, so either is what a server streaming Piper's
    chunks waits for (espeak ends a sentence at "Dr." too: such a text is short either way).
    """
    segment_ms, sentence_ms = [], []
    for _ in range(rounds):
        segment_ms.append(raw.first_chunk_ms(first))
        sentence_ms.append(raw.first_chunk_ms(text))
    return min(segment_ms), min(sentence_ms)


@dataclass
class Heard:
    """Word errors of tiny.en on one rendering: (edits, reference words)."""

    edits: int
    words: int


def heard(asr: FasterWhisperRecognizer, text: str, audio: FloatArray) -> Heard:
    audio16k = soxr.resample(audio, RATE, 16_000).astype(np.float32)
    reference = normalize_words(text)
    said = normalize_words(asr.transcribe(audio16k).text)
    return Heard(edit_distance(reference, said), len(reference))


@dataclass
class TextResult:
    """One text, one pass: timings, joins (by kind) and what tiny.en heard."""

    text: str
    raw_segment_ms: float
    raw_sentence_ms: float
    first_frame_ms: tuple[float, float]  # cut, whole
    late_ms: tuple[float, float]
    word_joins: list[dict[str, float]]
    clause_joins: list[dict[str, float]]
    whole_inner_ms: float
    heard: tuple[Heard, Heard]


async def measure_text(
    clients: tuple[TTSClient, TTSClient], sid: str, text: str, rule: FirstSegment
) -> tuple[Rendering, Rendering]:
    """The cut worker gets the text as tokens, the whole-sentence worker in one chunk."""
    cut = await render(clients[0], f"cut-{sid}", tokens(text))
    whole = await render(clients[1], f"whole-{sid}", [text])
    expected = [(s.start, s.end) for s in segments_of(text, rule)]
    if cut.spans != expected:
        raise AssertionError(f"the worker cut {cut.spans}, the segmenter {expected}: {text!r}")
    return cut, whole


async def measure(
    addresses: tuple[str, str], rule: FirstSegment, rounds: int, passes: int
) -> list[TextResult]:
    raw = RawPiper()
    asr = FasterWhisperRecognizer(ASRConfig())
    asr.load()
    results: list[TextResult] = []
    async with TTSClient(addresses[0]) as cut_client, TTSClient(addresses[1]) as whole_client:
        for round_index in range(passes):
            for number, text in enumerate(TEXTS):
                segments = segments_of(text, rule)
                times = raw_times(raw, text, segments[0].text, rounds)
                pair = (cut_client, whole_client)
                cut, whole = await measure_text(pair, f"{round_index}-{number}", text, rule)
                word_joins, clause_joins = [], []
                for index in range(1, len(segments)):
                    before = segments[index - 1]
                    if before.continues:
                        word_joins.append(
                            measure_join(cut.audio, cut.segment_starts[index], whole.audio)
                        )
                    elif before.text[-1] in ",;:-\u2013\u2014":
                        clause_joins.append(
                            measure_join(cut.audio, cut.segment_starts[index], whole.audio)
                        )
                results.append(
                    TextResult(
                        text,
                        *times,
                        (cut.first_frame_ms, whole.first_frame_ms),
                        (cut.late_ms, whole.late_ms),
                        word_joins,
                        clause_joins,
                        longest_inner_run_ms(quiet_blocks(whole.audio)),
                        (heard(asr, text, cut.audio), heard(asr, text, whole.audio)),
                    )
                )
    return results


def print_table(results: list[TextResult]) -> None:
    # join: silence at a join; here: in the whole rendering at the same words; inner: its longest
    print(f"{'text':40} {'seg/sent ms':>13} {'x':>5} {'join/here/inner ms':>18} {'click':>5} wer")
    for row in results:
        joins = row.word_joins + row.clause_joins
        inner = row.whole_inner_ms
        silences = " ".join(
            f"{j['join_ms']:.0f}/{j['whole_here_ms']:.0f}/{inner:.0f}" for j in joins
        )
        clicks = " ".join(f"{j['click']:.2f}" for j in joins)
        errors = "/".join(str(h.edits) for h in row.heard)
        print(
            f"{row.text[:40]:40} {row.raw_segment_ms:6.1f}/{row.raw_sentence_ms:<6.1f}"
            f" {row.raw_sentence_ms / row.raw_segment_ms:5.2f} {silences or '-':>18}"
            f" {clicks or '-':>5} {errors}"
        )


def summary(results: list[TextResult]) -> dict[str, float | int]:
    words = [j for r in results for j in r.word_joins]
    clauses = [j for r in results for j in r.clause_joins]
    speedups = [r.raw_sentence_ms / r.raw_segment_ms for r in results]

    def wer(which: int) -> float:
        heard = [r.heard[which] for r in results]
        return round(sum(h.edits for h in heard) / sum(h.words for h in heard), 4)

    def p50(values: list[float]) -> float:
        return round(statistics.median(values), 1) if values else 0.0

    return {
        "renderings": len(results),
        "word_joins": len(words),
        "join_silence_ms_max": max((j["join_ms"] for j in words), default=0.0),
        "join_silence_ms_p50": p50([j["join_ms"] for j in words]),
        "whole_silence_ms_max": max((j["whole_here_ms"] for j in words), default=0.0),
        "whole_silence_ms_p50": p50([j["whole_here_ms"] for j in words]),
        "whole_inner_silence_ms_max": max(r.whole_inner_ms for r in results),
        "clause_joins": len(clauses),
        "clause_join_silence_ms_max": max((j["join_ms"] for j in clauses), default=0.0),
        "clause_whole_silence_ms_max": max((j["whole_here_ms"] for j in clauses), default=0.0),
        "join_click_ratio_max": round(max((j["click"] for j in words + clauses), default=0), 3),
        "late_ms_max_cut": round(max(r.late_ms[0] for r in results), 1),
        "late_ms_max_whole": round(max(r.late_ms[1] for r in results), 1),
        "wer_segmented": wer(0),
        "wer_whole": wer(1),
        "first_frame_ms_p50_cut": p50([r.first_frame_ms[0] for r in results]),
        "first_frame_ms_p50_whole": p50([r.first_frame_ms[1] for r in results]),
        "raw_first_segment_ms_p50": p50([r.raw_segment_ms for r in results]),
        "raw_first_sentence_ms_p50": p50([r.raw_sentence_ms for r in results]),
        "first_segment_speedup_p50": round(statistics.median(speedups), 3),
        "first_segment_speedup_min": round(min(speedups), 3),
    }


def worker_config(mode: str, rule: FirstSegment) -> dict[str, Any]:
    return {
        "models": [{"id": "joe", "adapter": "piper", "options": {"threads": THREADS}}],
        "default_model": "joe",
        "registry": {"redis_url": None},
        "first_segment": {"mode": mode, "min_words": rule.min_words, "max_words": rule.max_words},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["words", "clause", "sentence"], default="words")
    parser.add_argument("--min-words", type=int, default=FirstSegment().min_words)
    parser.add_argument("--max-words", type=int, default=FirstSegment().max_words)
    parser.add_argument("--rounds", type=int, default=3, help="raw Piper tries per text")
    parser.add_argument("--passes", type=int, default=2, help="renderings of each text")
    args = parser.parse_args()
    rule = FirstSegment(args.mode, args.min_words, args.max_words)

    with tempfile.TemporaryDirectory() as tmp:
        cut = WorkerProcess(Path(tmp), {"name": "cut", **worker_config(args.mode, rule)})
        whole = WorkerProcess(Path(tmp), {"name": "whole", **worker_config("sentence", rule)})
        try:
            cut.start()
            whole.start()
            addresses = (cut.address, whole.address)
            results = asyncio.run(measure(addresses, rule, args.rounds, args.passes))
        finally:
            cut.stop()
            whole.stop()
    print(f"first_segment: {rule}")
    print_table(results)
    print_result(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
