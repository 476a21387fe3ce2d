"""Many clients talking to the stack at once, in real time, in rounds (bench/load.py).

Every client's microphone is on one 20 ms timer (`Line`): silence, and in each round one
utterance placed so that its true end of speech is sent at a chosen tick: the same tick for
every client (simultaneous), or ticks spread evenly over 2 s (staggered). A round ends when
every client's reply has ended and its metrics came (or a deadline passed); `read_turn` then
reads the turn from what the client received: TTFA on the client's clock, the metrics event,
playback underruns (bench/playout.py) and anything wrong.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from bench.playout import Interruption, underruns
from bench.turn import UTTERANCES, speech_end_s
from tests.speech import espeak_speech, piper_speech, trim
from voicefleet.client.session import ClientConnectError, ClientSession
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioResume,
    AudioStart,
    ErrorEvent,
    Hello,
    ServerMessage,
    TurnMetrics,
)

RATE = 16_000
CHUNK_S = 0.02
CHUNK = int(RATE * CHUNK_S)
SILENCE = bytes(2 * CHUNK)
SPREAD_S = 2.0  # staggered: the ends of speech spread evenly over this
LEAD_S = 0.4  # silence before a round's earliest speech
GAP_S = 1.0  # silence after a round's replies
REPLY_WITHIN_S = 30.0  # after the round's last end of speech
METRICS_WITHIN_S = 2.0  # after a reply's end


@dataclass(frozen=True)
class Clip:
    """One spoken utterance, cut into the 20 ms chunks the microphone sends."""

    voice: str
    text: str
    chunks: tuple[bytes, ...]
    end_chunk: int  # the chunk holding the true end of speech


def clip_of(voice: str, text: str, samples: np.ndarray) -> Clip:
    padded = np.concatenate([samples, np.zeros(-samples.size % CHUNK, np.int16)])
    chunks = tuple(padded[i : i + CHUNK].tobytes() for i in range(0, padded.size, CHUNK))
    return Clip(voice, text, chunks, max(0, round(speech_end_s(samples) / CHUNK_S) - 1))


def corpus() -> list[Clip]:
    """bench/turn.py's utterances, the two voices alternating (one client hears both)."""
    clips = []
    for text in UTTERANCES:
        clips.append(clip_of("piper", text, trim(piper_speech(text))))
        clips.append(clip_of("espeak", text, trim(espeak_speech(text))))
    return clips


def end_offset(index: int, clients: int, mode: str) -> int:
    """Ticks after the round's first end of speech at which client `index` stops speaking."""
    return 0 if mode == "simultaneous" else round(SPREAD_S / CHUNK_S * index / clients)


@dataclass(frozen=True)
class Mark:
    """A server message, when it arrived, and how many frames had arrived before it."""

    at: float
    message: ServerMessage
    frames: int


class Client:
    """One session: what its microphone sends next, and everything that came back."""

    def __init__(self, url: str) -> None:
        self.session = ClientSession(url, Hello(sample_rate=RATE), on_event=self._on_event)
        self.marks: list[Mark] = []
        self.queued: dict[int, bytes] = {}
        self.clip: Clip | None = None
        self.end_tick = -1
        self.spoken_end_at: float | None = None
        self.since = 0  # marks before the current turn
        self.failure: str | None = None

    def _on_event(self, message: ServerMessage) -> None:
        self.marks.append(Mark(time.monotonic(), message, len(self.session.result.frames)))

    async def open(self) -> bool:
        try:
            await self.session.open()
        except ClientConnectError as error:
            self.failure = str(error)
        return self.failure is None

    def say(self, clip: Clip, end_tick: int) -> None:
        """Speak `clip` so that its true end of speech is sent at `end_tick`."""
        start = end_tick - clip.end_chunk
        self.queued.update((start + i, chunk) for i, chunk in enumerate(clip.chunks))
        self.clip, self.end_tick, self.spoken_end_at = clip, end_tick, None
        self.since = len(self.marks)

    def turn_over(self, now: float) -> bool:
        """The speech is sent, every reply since it began has ended and has its metrics."""
        if self.session.finished:
            return True
        marks = self.marks[self.since :]
        started = {m.message.turn for m in marks if isinstance(m.message, AudioStart)}
        if self.spoken_end_at is None or not started:
            return False
        ended = {
            m.message.turn: m.at for m in marks if isinstance(m.message, AudioEnd | AudioCancel)
        }
        measured = {m.message.turn for m in marks if isinstance(m.message, TurnMetrics)}
        return all(
            t in ended and (t in measured or now - ended[t] > METRICS_WITHIN_S) for t in started
        )


class Line:
    """Every client's microphone on one 20 ms timer: one task, not one per client, since this
    bench shares the machine's 2 cores with the stack."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients
        self.tick = 0
        self.late_max_s = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            due = start + (self.tick + 1) * CHUNK_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.late_max_s = max(self.late_max_s, loop.time() - due)
            for client in self.clients:
                await client.session.send_audio(client.queued.pop(self.tick, SILENCE))
                if self.tick == client.end_tick:
                    client.spoken_end_at = time.monotonic()
            self.tick += 1


@dataclass
class Turn:
    """One client's turn: its reply's timing, playback and problems."""

    ttfa_ms: float | None = None
    server_ttfa_ms: float | None = None
    asr_queue_ms: float | None = None
    asr_ms: float | None = None
    first_frame_ms: float | None = None
    frames: int = 0
    late_frames: int = 0
    interruptions: int = 0
    extra_replies: int = 0
    missing: bool = False
    early: bool = False
    problems: list[str] = field(default_factory=list)


def read_turn(client: Client) -> Turn:
    """The client's current turn, from its marks and frame arrivals."""
    turn = Turn()
    marks = client.marks[client.since :]
    starts = [m for m in marks if isinstance(m.message, AudioStart)]
    if client.spoken_end_at is None or not starts:
        turn.missing = True
        return turn
    first = starts[0]
    number = first.message.turn if isinstance(first.message, AudioStart) else -1
    turn.extra_replies = len(starts) - 1
    mine = [m for m in marks if getattr(m.message, "turn", None) == number]
    end = next((m for m in mine if isinstance(m.message, AudioEnd | AudioCancel)), None)
    arrivals = client.session.result.frame_times[first.frames : end.frames if end else None]
    kinds = {AudioPause: "pause", AudioResume: "resume", AudioCancel: "cancel"}
    breaks = [
        Interruption(kinds[type(m.message)], m.at, m.frames - first.frames)
        for m in mine
        if type(m.message) in kinds
    ]
    turn.frames, turn.interruptions = len(arrivals), len(breaks)
    turn.late_frames = underruns(arrivals, breaks)
    if end is None:
        turn.problems.append(f"turn {number}: reply never ended")
    elif isinstance(end.message, AudioEnd) and end.message.frames != len(arrivals):
        turn.problems.append(
            f"turn {number}: {end.message.frames} frames sent, {len(arrivals)} came"
        )
    if arrivals and arrivals[0] < client.spoken_end_at:
        turn.early = True
    elif arrivals:
        turn.ttfa_ms = (arrivals[0] - client.spoken_end_at) * 1000
    metrics = next((m.message for m in mine if isinstance(m.message, TurnMetrics)), None)
    if metrics is not None:
        turn.server_ttfa_ms = metrics.ttfa_ms
        turn.asr_queue_ms, turn.asr_ms = metrics.asr_queue_ms, metrics.asr_ms
        turn.first_frame_ms = metrics.first_frame_ms
    return turn


@dataclass
class Load:
    """One (mode, N) run: every turn, what failed, and when it ran."""

    sessions: int
    mode: str
    turns: list[Turn] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    late_max_s: float = 0.0
    began: float = 0.0
    ended: float = 0.0


async def speak_round(
    clients: list[Client], line: Line, clips: list[Clip], index: int, mode: str
) -> None:
    """Every client says one clip (ends staggered or simultaneous); wait for all replies."""
    base = line.tick + round(LEAD_S / CHUNK_S) + max(clip.end_chunk for clip in clips)
    for i, client in enumerate(clients):
        client.say(clips[(i + index) % len(clips)], base + end_offset(i, len(clients), mode))
    last_end = base + end_offset(len(clients) - 1, len(clients), mode)
    deadline = time.monotonic() + (last_end - line.tick) * CHUNK_S + REPLY_WITHIN_S
    while time.monotonic() < deadline and not all(c.turn_over(time.monotonic()) for c in clients):
        await asyncio.sleep(0.1)


async def run_load(url: str, clips: list[Clip], sessions: int, mode: str, rounds: int) -> Load:
    """N clients, `rounds` turns each, on one microphone line."""
    load = Load(sessions, mode)
    clients = [Client(url) for _ in range(sessions)]
    opened = await asyncio.gather(*(c.open() for c in clients))
    live = [c for c, ok in zip(clients, opened, strict=True) if ok]
    line = Line(live)
    microphones = asyncio.create_task(line.run())
    load.began = time.monotonic()
    try:
        for index in range(rounds):
            await speak_round(live, line, clips, index, mode)
            load.turns += [read_turn(c) for c in live if not c.session.finished]
            await asyncio.sleep(GAP_S)
    finally:
        load.ended = time.monotonic()
        microphones.cancel()
        await asyncio.gather(microphones, return_exceptions=True)
        await asyncio.gather(*(c.session.close() for c in live))
    load.late_max_s = line.late_max_s
    for client in clients:
        if client.failure is None and client.session.failure is not None:
            client.failure = client.session.failure
        if client.failure is not None:
            load.failed.append(client.failure)
        load.errors += [
            f"{m.message.code}: {m.message.message}"
            for m in client.marks
            if isinstance(m.message, ErrorEvent)
        ]
    return load
