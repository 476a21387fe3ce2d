"""Soak: many concurrent spoken conversations for minutes; nothing lost, no error, flat memory.

A real stack (valkey, Piper worker(s), the orchestrator in echo mode, tiny.en ASR) serves
`--sessions` WebSocket clients at once for `--minutes`. Each client talks in real time: a
spoken question (the bundled voice, utterances of many shapes: one word, numbers, long
sentences), waits for the whole reply, pauses, and every fourth turn types a multi-sentence
paragraph to be said as is. For every reply it checks, on the client:
- delivered: the words the worker's frames spoke (`audio_end.text`, built from the per-frame
  text spans of tts.proto) equal the words the agent sent (`agent_text`), in order;
- no `error` event, no reply that never ends (30 s), no session closed under it.
RSS of every process (valkey, each worker, the orchestrator) is read after the first minute's
warm-up and at the end (and its peak meanwhile).

    .venv/bin/python bench/soak.py            # 10 sessions x 5 minutes
    .venv/bin/python bench/soak.py --quick    # 10 sessions x 1 minute

Prints one line per minute and, last, one JSON object; exits 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.output import print_result
from bench.stack import running_stack
from tests.integration.conftest import PIPER, Microphone
from tests.speech import piper_speech
from voicefleet.asr.wer import normalize_words
from voicefleet.client.session import ClientSession
from voicefleet.orchestrator.protocol import (
    AgentText,
    AudioEnd,
    ErrorEvent,
    Hello,
    ServerMessage,
)

UTTERANCES = [
    "Yes.",
    "What is the weather like in Paris today?",
    "Please book a table for two at seven.",
    "My number is five five five, one two three four.",
    "I would like to know how long the train from the central station to the airport takes "
    "on a weekday morning.",
    "Stop.",
    "Can you remind me what we talked about yesterday afternoon?",
]
PARAGRAPHS = [
    "The first boats left the harbour at dawn. By noon the bread was gone, and the ducks had "
    "followed us all the way to the bridge. Nobody had thought to bring a map.",
    "Here is your summary: three meetings on Tuesday, one call on Wednesday at 4 pm, and a "
    "dentist appointment on Friday. Shall I move the call?",
    "Okay.",
]
REPLY_WITHIN_S = 30.0


@dataclass
class Tally:
    turns: int = 0
    spoken_turns: int = 0
    typed_turns: int = 0
    lost: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ttfa_ms: list[float] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Conversation:
    """One client talking for the whole soak."""

    def __init__(self, index: int, url: str, clips: list[np.ndarray], tally: Tally) -> None:
        self.index = index
        self.url = url
        self.clips = clips
        self.tally = tally
        self.events: list[tuple[float, ServerMessage]] = []
        self.random = random.Random(index)

    async def run(self, until: float) -> None:
        session = ClientSession(
            self.url,
            Hello(sample_rate=16_000),
            on_event=lambda m: self.events.append((time.monotonic(), m)),
        )
        await session.open()
        mic = Microphone(session)
        mic.start()
        await asyncio.sleep(self.random.uniform(0.0, 2.0))  # do not start in lockstep
        try:
            for turn_index in itertools.count():
                if time.monotonic() >= until or session.finished:
                    break
                await self.one_turn(session, mic, typed=turn_index % 4 == 3)
                await asyncio.sleep(self.random.uniform(0.3, 1.2))
        finally:
            await mic.stop()
            await session.close()
        if session.finished and time.monotonic() < until:
            self.tally.errors.append(f"session {self.index}: closed early")

    async def one_turn(self, session: ClientSession, mic: Microphone, typed: bool) -> None:
        seen = len(self.events)
        began = time.monotonic()
        if typed:
            await session.send_text(self.random.choice(PARAGRAPHS), "say")
            self.tally.typed_turns += 1
        else:
            duration = mic.play(self.random.choice(self.clips))
            began += duration
            self.tally.spoken_turns += 1
        self.tally.turns += 1
        deadline = time.monotonic() + REPLY_WITHIN_S + (0 if typed else 5)
        while time.monotonic() < deadline:
            new = [m for _, m in self.events[seen:]]
            errors = [m for m in new if isinstance(m, ErrorEvent)]
            if errors:
                self.tally.errors += [
                    f"session {self.index}: {e.code}: {e.message}" for e in errors
                ]
                return
            end = next((m for m in new if isinstance(m, AudioEnd)), None)
            if end is not None:
                self.check(end, new, began)
                return
            await asyncio.sleep(0.02)
        self.tally.errors.append(f"session {self.index}: no reply within {REPLY_WITHIN_S} s")

    def check(self, end: AudioEnd, new: list[ServerMessage], began: float) -> None:
        sent = "".join(m.text for m in new if isinstance(m, AgentText) and m.turn == end.turn)
        if normalize_words(end.text) != normalize_words(sent):
            self.tally.lost.append(
                f"session {self.index} turn {end.turn}: {sent!r} -> {end.text!r}"
            )
        first = next(
            (
                t
                for t, m in self.events
                if getattr(m, "type", "") == "audio_start" and getattr(m, "turn", -1) == end.turn
            ),
            None,
        )
        if first is not None:
            self.tally.ttfa_ms.append((first - began) * 1000)


async def soak(url: str, sessions: int, seconds: float, pids: dict[str, int]) -> dict[str, object]:
    clips = [piper_speech(text) for text in UTTERANCES]
    tally = Tally()
    until = time.monotonic() + seconds
    conversations = [Conversation(i, url, clips, tally) for i in range(sessions)]
    tasks = [asyncio.create_task(c.run(until)) for c in conversations]
    warm_up_s = min(60.0, seconds / 3)
    await asyncio.sleep(warm_up_s)
    start = {name: rss_mb(pid) for name, pid in pids.items()}
    peak = dict(start)
    minute = time.monotonic()
    while not all(task.done() for task in tasks):
        await asyncio.sleep(2.0)
        for name, pid in pids.items():
            peak[name] = max(peak[name], rss_mb(pid))
        if time.monotonic() - minute >= 60:
            minute = time.monotonic()
            print(
                f"turns {tally.turns} lost {len(tally.lost)} errors {len(tally.errors)} "
                + " ".join(f"{n} {rss_mb(p):.0f} MB" for n, p in pids.items()),
                flush=True,
            )
    for task in tasks:
        if (error := task.exception()) is not None:
            tally.errors.append(f"client crashed: {error!r}")
    end = {name: rss_mb(pid) for name, pid in pids.items()}
    growth = {name: round(end[name] - start[name], 1) for name in pids}
    ttfa = sorted(tally.ttfa_ms) or [0.0]
    return {
        "sessions": sessions,
        "seconds": seconds,
        "turns": tally.turns,
        "spoken_turns": tally.spoken_turns,
        "typed_turns": tally.typed_turns,
        "lost": len(tally.lost),
        "errors": len(tally.errors),
        "ttfa_ms_p50": round(float(np.percentile(ttfa, 50)), 1),
        "ttfa_ms_p95": round(float(np.percentile(ttfa, 95)), 1),
        **{f"rss_{n}_start_mb": round(v, 1) for n, v in start.items()},
        **{f"rss_{n}_end_mb": round(v, 1) for n, v in end.items()},
        **{f"rss_{n}_peak_mb": round(v, 1) for n, v in peak.items()},
        **{f"rss_{n}_growth_mb": v for n, v in growth.items()},
        "details": "; ".join((tally.lost + tally.errors)[:10]) or "-",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="1 minute")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    minutes = 1.0 if args.quick else args.minutes

    with running_stack() as (stack, valkey_pid):
        pids: dict[str, int] = {"valkey": valkey_pid}
        for index in range(args.workers):
            worker = stack.worker(models=[{**PIPER, "options": {"threads": 2}}])
            assert worker.proc is not None
            pids[f"worker{index}"] = worker.proc.pid
        orchestrator = stack.orchestrator()
        assert orchestrator.proc is not None
        pids["orchestrator"] = orchestrator.proc.pid
        result = asyncio.run(soak(orchestrator.ws_url, args.sessions, minutes * 60, pids))
    print_result(result)
    return 0 if result["lost"] == 0 and result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
