"""Joins benchmark: what a short first segment saves, and whether the ear can hear the join.

Runs, in one process and one run, on texts of many shapes (--passes times each):
- three real `voicefleet worker` subprocesses over loopback gRPC, alike but for
  first_segment.mode: `words` (cut between words; the default), `clause` (the first clause
  break; the behaviour before `words`) and `sentence` (whole sentences: the reference). The
  first two get the text as 4-character tokens, like an LLM's, and their frames' spans are
  checked against the segmenter's; the reference gets it whole;
- raw Piper in process (the bundled voice, 2 threads, as the worker loads it): time to its
  first chunk of each mode's first segment and of the whole text (its first sentence: what a
  server streaming Piper's chunks waits for), best of --rounds tries.

At each join inside a sentence (after a word cut; clause cuts are reported apart) it measures
the silence (quiet 10 ms blocks under -45 dBFS touching the join) against the reference's at the
same words, and clicks (bench/rendering.py); per rendering, how late a frame arrived behind a
real-time playout from the first frame, and the words tiny.en gets wrong (pooled WER against
the text). Prints a table, then one JSON object as the last line (--json PATH: rows too).

    .venv/bin/python bench/joins.py [--passes 2] [--rounds 3] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.output import print_result
from bench.rendering import (
    RATE,
    FloatArray,
    Rendering,
    longest_inner_run_ms,
    measure_join,
    quiet_blocks,
    render,
    tokens,
)
from bench.worker import THREADS, RawPiper
from tests.worker_process import WorkerProcess
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import edit_distance, normalize_words
from voicefleet.rpc.tts_client import TTSClient
from voicefleet.tts.segmenter import FirstSegment, Segment, TextSegmenter

MODES = ("words", "clause")  # under test; "sentence" renders the reference
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
    "Your order number is 48213 and the total comes to 129 dollars with tax.",
]


def segments_of(text: str, rule: FirstSegment) -> list[Segment]:
    segmenter = TextSegmenter(first_segment=rule)
    return segmenter.push(text) + segmenter.flush()


def errors(asr: FasterWhisperRecognizer, text: str, audio: FloatArray) -> int:
    """Words tiny.en gets wrong (edit distance to the text's words)."""
    said = asr.transcribe(soxr.resample(audio, RATE, 16_000).astype(np.float32)).text
    return edit_distance(normalize_words(text), normalize_words(said))


@dataclass
class Cut:
    """One mode's rendering of one text, against the whole-sentence rendering."""

    raw_ms: float  # Piper's first chunk of this mode's first segment, best of rounds
    first_frame_ms: float
    late_ms: float
    word_joins: list[dict[str, float]]
    clause_joins: list[dict[str, float]]
    errors: int


@dataclass
class TextResult:
    """One text, one pass: the whole-sentence reference and each mode's cut."""

    text: str
    words: int
    raw_ms: float  # Piper's first chunk of the whole text (its first sentence)
    whole: Rendering
    whole_errors: int
    cuts: dict[str, Cut]


class Bench:
    """The workers, raw Piper and tiny.en for one run."""

    def __init__(self, clients: dict[str, TTSClient], rules: dict[str, FirstSegment]) -> None:
        self.clients = clients
        self.rules = rules
        self.raw = RawPiper()
        self.asr = FasterWhisperRecognizer(ASRConfig())
        self.asr.load()

    async def text(self, text: str, sid: str, rounds: int) -> TextResult:
        segments = {mode: segments_of(text, self.rules[mode]) for mode in MODES}
        raw = self.raw_ms([text, *(segments[mode][0].text for mode in MODES)], rounds)
        whole = await render(self.clients["sentence"], f"whole-{sid}", [text])
        cuts = {
            mode: await self.cut(mode, text, segments[mode], f"{mode}-{sid}", whole, raw[1 + n])
            for n, mode in enumerate(MODES)
        }
        words = len(normalize_words(text))
        return TextResult(text, words, raw[0], whole, errors(self.asr, text, whole.audio), cuts)

    def raw_ms(self, texts: list[str], rounds: int) -> list[float]:
        """Best of `rounds` ms to Piper's first chunk of each text, the texts interleaved."""
        tries = [[self.raw.first_chunk_ms(text) for text in texts] for _ in range(rounds)]
        return [min(column) for column in zip(*tries, strict=True)]

    async def cut(
        self,
        mode: str,
        text: str,
        segments: list[Segment],
        sid: str,
        whole: Rendering,
        raw_ms: float,
    ) -> Cut:
        """The worker of `mode` gets the text as tokens; its frames must speak its segments."""
        rendering = await render(self.clients[mode], sid, tokens(text))
        expected = [(s.start, s.end) for s in segments]
        if rendering.spans != expected:
            raise AssertionError(f"{mode}: the worker cut {rendering.spans}, not {expected}")
        word_joins, clause_joins = [], []
        for index in range(1, len(segments)):
            join = measure_join(rendering.audio, rendering.segment_starts[index], whole.audio)
            if segments[index - 1].continues:
                word_joins.append(join)
            elif segments[index - 1].text[-1] in ",;:-\u2013\u2014":
                clause_joins.append(join)
        return Cut(
            raw_ms,
            rendering.first_frame_ms,
            rendering.late_ms,
            word_joins,
            clause_joins,
            errors(self.asr, text, rendering.audio),
        )


async def measure(
    addresses: dict[str, str], rules: dict[str, FirstSegment], texts: list[str], args: Any
) -> list[TextResult]:
    clients = {mode: TTSClient(address) for mode, address in addresses.items()}
    try:
        bench = Bench(clients, rules)
        return [
            await bench.text(text, f"{n}-{i}", args.rounds)
            for n in range(args.passes)
            for i, text in enumerate(texts)
        ]
    finally:
        for client in clients.values():
            await client.close()


def row(result: TextResult) -> dict[str, Any]:
    """One rendering pass of one text, flat (the report's per-text table)."""
    words, clause = result.cuts["words"], result.cuts["clause"]
    joins = words.word_joins
    return {
        "text": result.text[:40],
        "raw_ms_words": round(words.raw_ms, 1),
        "raw_ms_clause": round(clause.raw_ms, 1),
        "raw_ms_sentence": round(result.raw_ms, 1),
        "first_frame_ms_words": round(words.first_frame_ms, 1),
        "first_frame_ms_whole": round(result.whole.first_frame_ms, 1),
        "join_ms": max((j["join_ms"] for j in joins), default=None),
        "whole_here_ms": max((j["whole_here_ms"] for j in joins), default=None),
        "clause_join_ms": max((j["join_ms"] for j in words.clause_joins), default=None),
        "click": round(max((j["click"] for j in joins + words.clause_joins), default=0.0), 3),
        "late_ms_words_clause": f"{words.late_ms:.0f}/{clause.late_ms:.0f}",
        "errors_words_clause_whole": f"{words.errors}/{clause.errors}/{result.whole_errors}",
        "words": result.words,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'text':40} {'raw ms w/c/s':>14} {'join/here':>9} {'click':>5} late errors")
    for r in rows:
        raw = f"{r['raw_ms_words']:.0f}/{r['raw_ms_clause']:.0f}/{r['raw_ms_sentence']:.0f}"
        join = "-" if r["join_ms"] is None else f"{r['join_ms']:.0f}/{r['whole_here_ms']:.0f}"
        late, wrong = r["late_ms_words_clause"], r["errors_words_clause_whole"]
        print(f"{r['text']:40} {raw:>14} {join:>9} {r['click']:5.2f} {late:>4} {wrong}")


def summary(results: list[TextResult]) -> dict[str, float | int]:
    def cuts(mode: str) -> list[Cut]:
        return [r.cuts[mode] for r in results]

    def p50(values: list[float]) -> float:
        return round(statistics.median(values), 1) if values else 0.0

    def speedups(mode: str) -> list[float]:
        return [r.raw_ms / r.cuts[mode].raw_ms for r in results]

    def wer(counts: list[int]) -> float:
        return round(sum(counts) / sum(r.words for r in results), 4)

    joins = [j for c in cuts("words") for j in c.word_joins]
    clause_joins = [j for c in cuts("words") for j in c.clause_joins]
    return {
        "renderings": len(results),
        "word_joins": len(joins),
        "join_silence_ms_p50": p50([j["join_ms"] for j in joins]),
        "join_silence_ms_max": max((j["join_ms"] for j in joins), default=0.0),
        "whole_silence_ms_p50": p50([j["whole_here_ms"] for j in joins]),
        "whole_silence_ms_max": max((j["whole_here_ms"] for j in joins), default=0.0),
        "whole_inner_silence_ms_max": max(
            longest_inner_run_ms(quiet_blocks(r.whole.audio)) for r in results
        ),
        "clause_join_silence_ms_max": max((j["join_ms"] for j in clause_joins), default=0.0),
        "clause_whole_silence_ms_max": max((j["whole_here_ms"] for j in clause_joins), default=0.0),
        "join_click_ratio_max": round(
            max((j["click"] for j in joins + clause_joins), default=0), 3
        ),
        "late_ms_max": round(max(c.late_ms for m in MODES for c in cuts(m)), 1),
        "wer_segmented": wer([c.errors for c in cuts("words")]),
        "wer_clause": wer([c.errors for c in cuts("clause")]),
        "wer_whole": wer([r.whole_errors for r in results]),
        "first_frame_ms_p50": p50([c.first_frame_ms for c in cuts("words")]),
        "first_frame_ms_p50_clause": p50([c.first_frame_ms for c in cuts("clause")]),
        "first_frame_ms_p50_whole": p50([r.whole.first_frame_ms for r in results]),
        "raw_first_segment_ms_p50": p50([c.raw_ms for c in cuts("words")]),
        "raw_first_clause_ms_p50": p50([c.raw_ms for c in cuts("clause")]),
        "raw_first_sentence_ms_p50": p50([r.raw_ms for r in results]),
        "first_segment_speedup_p50": round(statistics.median(speedups("words")), 3),
        "first_segment_speedup_min": round(min(speedups("words")), 3),
        "clause_speedup_p50": round(statistics.median(speedups("clause")), 3),
    }


def worker_config(name: str, rule: FirstSegment) -> dict[str, Any]:
    return {
        "name": f"joins-{name}",
        "models": [{"id": "joe", "adapter": "piper", "options": {"threads": THREADS}}],
        "default_model": "joe",
        "registry": {"redis_url": None},
        "first_segment": {
            "mode": rule.mode,
            "min_words": rule.min_words,
            "max_words": rule.max_words,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-words", type=int, default=FirstSegment().min_words)
    parser.add_argument("--max-words", type=int, default=FirstSegment().max_words)
    parser.add_argument("--rounds", type=int, default=3, help="raw Piper tries per text")
    parser.add_argument("--passes", type=int, default=2, help="renderings of each text")
    parser.add_argument("--quick", action="store_true", help="7 texts, one pass, one try")
    parser.add_argument("--json", type=Path, help="also write every row and figure here")
    args = parser.parse_args()
    texts = TEXTS[::2] if args.quick else TEXTS
    if args.quick:
        args.passes, args.rounds = 1, 1
    rules = {
        "words": FirstSegment("words", args.min_words, args.max_words),
        "clause": FirstSegment("clause"),
        "sentence": FirstSegment("sentence"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        workers = {m: WorkerProcess(Path(tmp), worker_config(m, r)) for m, r in rules.items()}
        try:
            addresses = {mode: worker.start().address for mode, worker in workers.items()}
            results = asyncio.run(measure(addresses, rules, texts, args))
        finally:
            for worker in workers.values():
                worker.stop()
    rows = [row(result) for result in results]
    print(f"words: {rules['words']}")
    print_table(rows)
    figures = summary(results)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": figures}, indent=1))
    print_result(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
