"""Resident memory of one Piper model per `spinning` setting (off, alone, always).

Each setting runs in a fresh process: the bundled voice is loaded and warmed up as the worker
does, then a long sentence (~30 s of speech) is synthesized twice: once alone, once while
another synthesis counts as running (so `alone` renders it on its second, sleeping session).
The resident set size (RSS, /proc/self/statm) is read after each step, less the process's
before loading. `alone` holds two ONNX Runtime sessions; both take their working memory from
one shared arena, so a long sentence on each does not hold that memory twice.

    .venv/bin/python bench/piper_memory.py [--json PATH]

The last line is one JSON object: MB per setting and step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = ("off", "alone", "always")
STEPS = ("loaded", "long_alone", "long_beside")
LONG = (
    " ".join(
        ["This is a long sentence that keeps going on and on, with many clauses and words,"] * 8
    )
    + " and so the model has to produce a great deal of audio in one single call."
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 1e6


def measure(spinning: str) -> dict[str, float]:
    """In this process: RSS growth after each step, MB."""
    from voicefleet.tts.adapters import ModelSpec
    from voicefleet.tts.adapters.base import SynthesisOptions
    from voicefleet.tts.adapters.piper import RUNNING, PiperAdapter

    before = _rss_mb()
    piper = PiperAdapter(
        ModelSpec(id="joe", adapter="piper", options={"threads": 2, "spinning": spinning})
    )
    piper.load()
    piper.warm_up()
    grown = {"loaded": _rss_mb() - before}
    for _ in piper.synthesize(LONG, SynthesisOptions()):
        pass
    grown["long_alone"] = _rss_mb() - before
    with RUNNING.one():  # another synthesis is running
        for _ in piper.synthesize(LONG, SynthesisOptions()):
            pass
    grown["long_beside"] = _rss_mb() - before
    return {step: round(mb, 1) for step, mb in grown.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the table here")
    parser.add_argument("--one", choices=SETTINGS, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return 0
    results: dict[str, dict[str, float]] = {}
    for spinning in SETTINGS:
        done = subprocess.run(
            [sys.executable, __file__, "--one", spinning],
            capture_output=True,
            text=True,
            check=True,
        )
        results[spinning] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'RSS growth, MB':<16}" + "".join(f"{step:>14}" for step in STEPS))
    for spinning, row in results.items():
        print(f"{spinning:<16}" + "".join(f"{row[step]:>14}" for step in STEPS))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps({"rss_mb": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
