"""End-of-turn benchmark: how fast each endpointing policy replies, and how often it cuts in.

A corpus of spoken utterances in two voices (the bundled Piper voice and espeak-ng): complete
ones; ones with a mid-sentence pause (300-1000 ms) after which the person goes on ("a table
for ... two at seven"); and afterthoughts, a pause after a finished sentence before the person
adds to it ("What is the weather like? ... In Paris today"). Each kind gets every pause length
equally often. `cut_in_rate` is over the mid-sentence pauses (the goal's measure);
`cut_in_rate_afterthought` and `cut_in_rate_all` report the rest. Each is played in real
time through the WebSocket, in a fresh session, to a real stack (valkey, one Piper worker, the
orchestrator in echo mode) run once per policy: silence-only 600 ms, silence-only 200 ms, and
the semantic policy (`pipeline.end_of_turn`, its defaults).

Measured on the client's clock:
- TTFA: first reply frame - the moment the true end of speech was sent (complete utterances);
- cut-in: a reply frame arrived before the person had finished (paused utterances).
Prints a table per policy; the last line is one JSON object (the semantic policy's numbers,
with the 600 ms silence policy's cut-in rate as `baseline_cut_in_rate`). `--rows` writes every
utterance's result per policy, with each turn's final transcript and how its end was decided
(`end_of_turn`, `endpoint_ms` from the metrics event), so a cut-in or a slow reply is explained.

    .venv/bin/python bench/turns.py [--voices piper,espeak] [--quick] [--rows rows.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import running_stack
from bench.turn import TimedMicrophone, speech_end_s
from tests.integration.conftest import PIPER
from tests.speech import espeak_speech, piper_speech, trim
from voicefleet.client.session import ClientSession
from voicefleet.orchestrator.protocol import Hello, TranscriptEvent, TurnMetrics

RATE = 16_000
LEAD_S = 0.5
TAIL_S = 2.0  # silence after the last word: the longest wait (1.2 s) plus the reply
METRICS_WAIT_S = 12.0  # the echo reply of the longest utterance plays out within this

COMPLETE = [
    "What is the weather like in Paris today?",
    "Please book a table for two at seven.",
    "How far is the train station from here?",
    "Turn off the lights in the kitchen.",
    "Yes.",
    "No, thank you.",
    "Can you play some jazz?",
    "I need a taxi to the airport.",
    "What time does the museum open tomorrow?",
    "Remind me to call my sister at noon.",
    "That sounds great.",
    "Set a timer for ten minutes.",
    "Well, I think that is a good idea.",
    "Please tell me a story about the sea, the wind and the old ships.",
]
# (first part, second part): the person pauses between them.
PAUSED_UNFINISHED = [
    ("I would like to book a table for", "two people at seven."),
    ("Can you send the report to", "my manager by Friday?"),
    ("I need to buy some milk and", "a loaf of bread."),
    ("The meeting has been moved to", "Thursday afternoon."),
    ("Could you tell me the", "way to the station?"),
    ("I was thinking that", "we could go hiking this weekend."),
]
PAUSED_FINISHED_SOUNDING = [
    ("What is the weather like?", "In Paris today."),
    ("Play some music.", "Something quiet, please."),
]
PAUSES_S = (0.3, 0.5, 0.7, 1.0)

POLICIES: dict[str, dict[str, Any]] = {
    "silence_600": {"vad": {"hangover_ms": 600}, "end_of_turn": {"policy": "silence"}},
    "silence_200": {"vad": {"hangover_ms": 200}, "end_of_turn": {"policy": "silence"}},
    "semantic": {"vad": {"hangover_ms": 600}, "end_of_turn": {"policy": "semantic"}},
    "semantic_spec60": {
        "vad": {"hangover_ms": 600, "speculate_ms": 60},
        "end_of_turn": {"policy": "semantic"},
    },
    "semantic_fast": {
        "vad": {"hangover_ms": 600, "speculate_ms": 60},
        "end_of_turn": {"policy": "semantic", "complete_ms": 200},
    },
    "semantic_300": {
        "vad": {"hangover_ms": 600},
        "end_of_turn": {"policy": "semantic", "complete_ms": 300},
    },
}


@dataclass
class Utterance:
    """One item of the corpus: its audio, where each part's speech ends, and its kind."""

    kind: str  # complete | paused_unfinished | paused_finished
    voice: str
    text: str
    audio: np.ndarray
    end_s: float  # true end of speech, from the start of `audio`
    pause_s: float = 0.0


def pause_for(index: int, voice_index: int, group: int) -> float:
    """The pause of pair `index` of a kind with `group` pairs, in voice `voice_index`: each kind
    gets every pause length equally often over the voices, the second voice going on where the
    first left off (6 unfinished pairs x 2 voices = 3 of each of the 4 lengths)."""
    return PAUSES_S[(index + voice_index * group) % len(PAUSES_S)]


def corpus(voices: list[str], quick: bool) -> list[Utterance]:
    speak = {"piper": piper_speech, "espeak": espeak_speech}
    items: list[Utterance] = []
    complete = COMPLETE[:4] if quick else COMPLETE
    unfinished = PAUSED_UNFINISHED[:2] if quick else PAUSED_UNFINISHED
    finished = PAUSED_FINISHED_SOUNDING[:1] if quick else PAUSED_FINISHED_SOUNDING
    for voice in voices:
        say = speak[voice]
        for text in complete:
            clip = trim(say(text))
            items.append(Utterance("complete", voice, text, clip, speech_end_s(clip)))
        pairs = [("paused_unfinished", i, p) for i, p in enumerate(unfinished)]
        pairs += [("paused_finished", i, p) for i, p in enumerate(finished)]
        for kind, index, (first, second) in pairs:
            group = len(unfinished) if kind == "paused_unfinished" else len(finished)
            pause = pause_for(index, voices.index(voice), group)
            a, b = trim(say(first)), trim(say(second))
            audio = np.concatenate([a, np.zeros(int(pause * RATE), np.int16), b])
            items.append(
                Utterance(kind, voice, f"{first} … {second}", audio, speech_end_s(audio), pause)
            )
    return items


async def play(url: str, item: Utterance, echo: str = "auto") -> dict[str, Any]:
    """One utterance in a fresh session: TTFA from the true end, and whether it cut in."""
    session = ClientSession(url, Hello(sample_rate=RATE, echo_cancellation=echo))
    await session.open()
    total = LEAD_S + item.audio.size / RATE + TAIL_S
    mic = TimedMicrophone(session, np.zeros(int(total * RATE), np.int16))
    mic.insert(LEAD_S, item.audio)
    try:
        await mic.run()
        await metrics_for_every_turn(session)
    finally:
        await session.close()
    spoken_end = mic.time_of(LEAD_S + item.end_s)
    frames = session.result.frame_times
    first = frames[0] if frames else None
    messages = [event.message for event in session.result.events]
    metrics = [m for m in messages if isinstance(m, TurnMetrics)]
    return {
        "kind": item.kind,
        "voice": item.voice,
        "text": item.text,
        "pause_s": item.pause_s,
        "ttfa_ms": None if first is None else round((first - spoken_end) * 1000, 1),
        "cut_in": first is not None and first < spoken_end,
        # How each turn ended, so a cut-in or a slow reply can be explained from the rows.
        "end_of_turn": [m.end_of_turn for m in metrics],
        "endpoint_ms": [m.endpoint_ms for m in metrics],
        # Where a slow reply's time went: transcription, and the first frame (see summarize).
        "asr_ms": [m.asr_ms for m in metrics],
        "first_frame_ms": [m.first_frame_ms for m in metrics],
        "finals": [m.text for m in messages if isinstance(m, TranscriptEvent) and m.final],
    }


async def metrics_for_every_turn(session: ClientSession, within_s: float = METRICS_WAIT_S) -> None:
    """Wait (bounded) for the last turn's metrics event: it says how the turn ended, and it comes
    when the reply is over, often after the microphone has stopped. (An earlier turn whose reply
    was dropped before it was heard has none.)"""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        messages = [event.message for event in session.result.events]
        finals = [m.turn for m in messages if isinstance(m, TranscriptEvent) and m.final]
        reported = {m.turn for m in messages if isinstance(m, TurnMetrics)}
        if not finals or max(finals) in reported:
            return
        await asyncio.sleep(0.05)


def explain(row: dict[str, Any]) -> str:
    """One row as a line: voice, text, pause, and how each of its turns ended."""
    turns = ", ".join(
        f"{how} after {waited:.0f} ms" if waited is not None else str(how)
        for how, waited in zip(row["end_of_turn"], row["endpoint_ms"], strict=True)
    )
    pause = f" (pause {row['pause_s']} s)" if row["pause_s"] else ""
    return f"{row['voice']} {row['text']!r}{pause}: {turns or 'no metrics'}"


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    complete = [r["ttfa_ms"] for r in rows if r["kind"] == "complete" and r["ttfa_ms"] is not None]
    paused = [r for r in rows if r["kind"] != "complete"]
    unfinished = [r for r in paused if r["kind"] == "paused_unfinished"]
    finished = [r for r in paused if r["kind"] == "paused_finished"]
    missing = sum(1 for r in rows if r["kind"] == "complete" and r["ttfa_ms"] is None)
    # A reply before the end of a complete utterance: the policy ended it at a gap between words.
    early = [r for r in rows if r["kind"] == "complete" and r["cut_in"]]
    # The metrics event's first_frame_ms (the last turn's): from the reply's text being ready to
    # its first frame leaving the worker's stream, and never before the turn was committed (a
    # held reply takes no frame). Not held (silence_200): the worker's first-frame latency; held:
    # whichever came later, the end of the wait or the worker's first frame.
    first_frames = [
        r["first_frame_ms"][-1]
        for r in rows
        if r["kind"] == "complete" and r["first_frame_ms"] and r["first_frame_ms"][-1] is not None
    ]

    def rate(group: list[dict[str, Any]]) -> float:
        return round(sum(r["cut_in"] for r in group) / len(group), 3) if group else 0.0

    return {
        "ttfa_ms_p50": pct(complete, 50),
        "ttfa_ms_p95": pct(complete, 95),
        # The goal's measure: pauses inside a sentence. An afterthought after a finished
        # sentence is reported on its own (and in cut_in_rate_all): replying to "What is the
        # weather like?" after 300 ms is what a person would do too.
        "cut_in_rate": rate(unfinished),
        "cut_in_rate_afterthought": rate(finished),
        "cut_in_rate_all": rate(paused),
        "premature_rate": round(len(early) / max(len(complete) + missing, 1), 3),
        "first_frame_ms_p50": pct(first_frames, 50),
        "no_reply": missing,
        "complete": len(complete) + missing,
        "paused": len(paused),
    }


async def run_policy(url: str, items: list[Utterance], echo: str) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        rows.append(await play(url, item, echo))
        await asyncio.sleep(0.3)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default="piper,espeak")
    parser.add_argument("--quick", action="store_true", help="a few utterances per kind")
    parser.add_argument("--policies", default="silence_600,silence_200,semantic")
    parser.add_argument("--rows", type=Path, help="write every utterance's result here (JSON)")
    parser.add_argument(
        "--echo-cancellation",
        default="auto",
        choices=["auto", "off"],
        help="hello.echo_cancellation of every session (default auto, as a plain client)",
    )
    args = parser.parse_args()
    items = corpus(args.voices.split(","), args.quick)
    print(f"corpus: {len(items)} utterances", flush=True)

    results: dict[str, dict[str, Any]] = {}
    all_rows: dict[str, list[dict[str, Any]]] = {}
    with running_stack() as (stack, _):
        stack.worker(models=[{**PIPER, "options": {"threads": 2}}])
        for name in args.policies.split(","):
            began = time.monotonic()
            orchestrator = stack.orchestrator(pipeline=POLICIES[name])
            rows = asyncio.run(run_policy(orchestrator.ws_url, items, args.echo_cancellation))
            orchestrator.stop()
            all_rows[name] = rows
            results[name] = summarize(rows)
            print(f"{name}: {results[name]} ({time.monotonic() - began:.0f} s)", flush=True)
            for row in rows:
                if row["cut_in"]:
                    label = "premature" if row["kind"] == "complete" else "cut in"
                    print(f"  {label}: {explain(row)}", flush=True)
    if args.rows:
        args.rows.write_text(json.dumps(all_rows, indent=1))

    keys = ["ttfa_ms_p50", "ttfa_ms_p95", "cut_in_rate", "cut_in_rate_afterthought"]
    keys += ["cut_in_rate_all", "premature_rate", "first_frame_ms_p50", "no_reply"]
    print(f"\n{'policy':<16}" + "".join(f"{k:>30}" for k in keys))
    for name, summary in results.items():
        print(f"{name:<16}" + "".join(f"{summary[k]!s:>30}" for k in keys))
    final = dict(results.get("semantic", {}))
    baseline = results.get("silence_600", {})
    final["baseline_cut_in_rate"] = baseline.get("cut_in_rate")
    final["baseline_cut_in_rate_all"] = baseline.get("cut_in_rate_all")
    final["silence_200"] = results.get("silence_200")
    final["utterances"] = len(items)
    print(json.dumps(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())
