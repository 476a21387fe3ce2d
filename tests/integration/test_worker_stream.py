"""A real Piper worker over real gRPC: framing, streaming, PAUSE/RESUME/STOP, loudness."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest

from tests.integration.test_worker_metrics import scrape, value
from tests.worker_process import WorkerProcess, free_port
from voicefleet.audio.pcm import s16le_to_float
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import PAUSE, RELOAD, RESUME, STOP, TTSClient
from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import PiperAdapter

THREE_SENTENCES = (
    "Good morning, and welcome to the voice fleet demo. "
    "This sentence makes the text take a while to synthesize. "
    "The third one makes the reply much longer than its first clause."
)
DETERMINISTIC = {"noise_scale": "0", "noise_w_scale": "0"}
_ids = itertools.count()


def new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns()}"


@pytest.fixture
async def client(piper_worker: WorkerProcess) -> TTSClient:
    async with TTSClient(piper_worker.address) as tts:
        yield tts  # type: ignore[misc]


async def collect(client: TTSClient, session_id: str, texts: list[str]) -> list[tts_pb2.AudioFrame]:
    return [frame async for frame in client.synthesize(session_id, texts)]


async def test_frames_are_exact_20ms_and_numbered(client: TTSClient) -> None:
    sid = new_id("frames")
    started = await client.start_session(sid)
    assert (started.format.sample_rate, started.format.frame_samples) == (48_000, 960)
    frames = await collect(client, sid, ["Hello there, this is one short reply."])
    assert len(frames) > 50
    assert {len(f.pcm) for f in frames} == {1920}
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert [f.final for f in frames] == [False] * (len(frames) - 1) + [True]
    assert {(f.sample_rate, f.frame_ms, f.session_id) for f in frames} == {(48_000, 20, sid)}
    ended = await client.end_session(sid)
    assert ended.frames_sent == len(frames)


async def test_first_frame_arrives_before_the_text_is_fully_synthesized(client: TTSClient) -> None:
    adapter = PiperAdapter(ModelSpec(id="joe", adapter="piper", options={"threads": 2}))
    adapter.load()
    adapter.warm_up()
    full_ms = []
    for _ in range(3):
        began = time.perf_counter()
        for _chunk in adapter.synthesize(THREE_SENTENCES, SynthesisOptions()):
            pass
        full_ms.append((time.perf_counter() - began) * 1000)
    first_ms = []
    for _ in range(3):
        sid = new_id("first")
        await client.start_session(sid)
        began = time.perf_counter()
        await anext(aiter(client.synthesize(sid, [THREE_SENTENCES])))
        first_ms.append((time.perf_counter() - began) * 1000)
        await client.control(sid, STOP)
        await client.end_session(sid)
    # The first clause is ~1/6 of the text: even on a loaded 2-core machine it comes well ahead.
    assert min(first_ms) < 0.6 * min(full_ms), (first_ms, full_ms)


async def test_text_streamed_token_by_token_starts_speaking_before_input_ends(
    client: TTSClient,
) -> None:
    sid = new_id("tokens")
    await client.start_session(sid)
    input_done = asyncio.Event()

    async def tokens():  # type: ignore[no-untyped-def]
        for word in [
            "Right,",
            "here",
            "is",
            "a",
            "reply",
            "that",
            "an",
            "LLM",
            "streams",
            "word",
            "by",
            "word.",
        ]:
            yield word + " "
        await asyncio.sleep(1.0)  # the model is still "thinking"
        input_done.set()
        yield "The end."

    frames = aiter(client.synthesize(sid, tokens()))
    first = await anext(frames)
    assert isinstance(first, tts_pb2.AudioFrame)
    assert not input_done.is_set(), "audio must start while text is still arriving"
    rest = [frame async for frame in frames]
    assert rest[-1].final and input_done.is_set()
    await client.end_session(sid)


class Consumer:
    """Reads one call in the background, remembering how many frames arrived."""

    def __init__(self, client: TTSClient, sid: str) -> None:
        self.frames: list[tts_pb2.AudioFrame] = []
        self.task = asyncio.create_task(self._read(client, sid))

    @property
    def count(self) -> int:
        return len(self.frames)

    async def _read(self, client: TTSClient, sid: str) -> None:
        async for frame in client.synthesize(sid, [THREE_SENTENCES]):
            self.frames.append(frame)


async def test_pause_holds_frames_and_resume_loses_nothing(client: TTSClient) -> None:
    reference_id, paused_id = new_id("ref"), new_id("paused")
    for sid in (reference_id, paused_id):
        await client.start_session(sid, options=DETERMINISTIC)
    reference_task = asyncio.create_task(collect(client, reference_id, [THREE_SENTENCES]))
    reader = Consumer(client, paused_id)
    while len(reader.frames) < 25:
        await asyncio.sleep(0.005)
    ack = await client.control(paused_id, PAUSE)
    at_ack = len(reader.frames)
    assert ack.state == tts_pb2.SESSION_STATE_PAUSED
    await asyncio.sleep(0.6)
    assert len(reader.frames) - at_ack <= 1, "frames arrived after PAUSE was acknowledged"
    assert ack.frames_sent <= len(reader.frames) <= ack.frames_sent + 1
    resumed = await client.control(paused_id, RESUME)
    assert resumed.state == tts_pb2.SESSION_STATE_STREAMING
    await reader.task
    reference = await reference_task
    frames = reader.frames
    assert len(frames) == len(reference)
    assert [f.sequence for f in frames] == list(range(len(frames)))
    pcm = s16le_to_float(b"".join(f.pcm for f in frames))
    ref = s16le_to_float(b"".join(f.pcm for f in reference))
    assert np.max(np.abs(pcm - ref)) < 0.01, "resumed audio must continue exactly where it paused"


async def test_stop_ends_the_stream_cleanly_and_the_session_speaks_again(client: TTSClient) -> None:
    sid = new_id("stop")
    await client.start_session(sid)
    call = client.synthesize(sid, [THREE_SENTENCES])
    frames = aiter(call)
    got = [await anext(frames) for _ in range(5)]
    stopped = await client.control(sid, STOP)
    assert stopped.state == tts_pb2.SESSION_STATE_IDLE
    rest = [frame async for frame in frames]
    # Frames already sent (up to the lead) still arrive; nothing after STOP took effect but one.
    assert len(got) + len(rest) <= stopped.frames_sent + 1
    assert not any(f.final for f in got + rest)
    assert (await call.code()).name == "OK"
    again = await collect(client, sid, ["Yes, I can still speak."])
    assert again[-1].final and again[0].sequence == 0
    await client.end_session(sid)


async def test_frames_say_which_text_they_speak(client: TTSClient) -> None:
    sid = new_id("spans")
    await client.start_session(sid)
    chunks = ["  Good morning,", " and welcome", " to the demo.  It is", " short. Bye!"]
    text = "".join(chunks)
    frames = await collect(client, sid, chunks)
    spans: dict[int, set[tuple[int, int]]] = {}
    for frame in frames:
        spans.setdefault(frame.segment_index, set()).add((frame.text_start, frame.text_end))
    assert sorted(spans) == list(range(len(spans)))
    assert all(len(s) == 1 for s in spans.values()), "every frame of a segment has its span"
    order = [frame.segment_index for frame in frames]
    assert order == sorted(order), "segments arrive in order"
    said = [text[start:end] for index in sorted(spans) for start, end in spans[index]]
    assert said == ["Good morning,", "and welcome to the demo.", "It is short.", "Bye!"]
    await client.end_session(sid)


LONG_FIRST_SENTENCE = (
    "The quick brown fox jumps over the lazy dog near the river bank today. Then it slept."
)


@pytest.mark.parametrize(
    ("mode", "first"),
    [
        ("words", "The quick brown fox jumps"),
        ("sentence", LONG_FIRST_SENTENCE.split(". ")[0] + "."),
    ],
)
async def test_the_first_segment_is_cut_as_the_worker_is_configured(  # type: ignore[no-untyped-def]
    start_worker, mode: str, first: str
) -> None:
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock"}],
        default_model="mock",
        first_segment={"mode": mode},
    )
    async with TTSClient(worker.address) as tts:
        await tts.start_session("cut")
        frames = await collect(tts, "cut", [LONG_FIRST_SENTENCE])
    assert LONG_FIRST_SENTENCE[frames[0].text_start : frames[0].text_end] == first


def quiet_ms_at(audio: np.ndarray, at: int) -> int:
    """The run of quiet 10 ms blocks (< -45 dBFS) touching the 20 ms frame from sample `at`."""
    blocks = audio[: audio.size // 480 * 480].reshape(-1, 480).astype(np.float64)
    quiet = 20 * np.log10(np.sqrt(np.mean(blocks**2, axis=1)) + 1e-12) < -45
    join, longest, begin = at // 480, 0, None
    for index, is_quiet in enumerate([*quiet, False]):
        if is_quiet and begin is None:
            begin = index
        elif not is_quiet and begin is not None:
            if begin <= join + 2 and index > join - 1:
                longest = max(longest, index - begin)
            begin = None
    return 10 * longest


async def test_a_join_inside_a_sentence_adds_no_silence(client: TTSClient) -> None:
    sid = new_id("join")
    await client.start_session(sid, options=DETERMINISTIC)
    frames = await collect(client, sid, [LONG_FIRST_SENTENCE])
    starts = [
        n for n, f in enumerate(frames) if n == 0 or f.segment_index != frames[n - 1].segment_index
    ]
    first = frames[0]
    assert LONG_FIRST_SENTENCE[first.text_start : first.text_end] == "The quick brown fox jumps"
    audio = s16le_to_float(b"".join(f.pcm for f in frames))
    # Piper pads each synthesis with ~50 ms of silence before and ~150 ms after; between two
    # words of one sentence the worker keeps 15 ms of each (measured: 40 ms of quiet blocks).
    assert quiet_ms_at(audio, starts[1] * 960) <= 60  # 150 ms untrimmed
    await client.end_session(sid)


async def test_pause_before_a_stream_holds_it_from_its_first_frame(client: TTSClient) -> None:
    sid = new_id("prepaused")
    await client.start_session(sid)
    ack = await client.control(sid, PAUSE)
    assert ack.state == tts_pb2.SESSION_STATE_IDLE
    reader = Consumer(client, sid)
    await asyncio.sleep(1.0)  # far longer than the first frame takes unpaused
    assert reader.count == 0, "a session paused while idle must hold its next stream"
    await client.control(sid, RESUME)
    await reader.task
    assert reader.frames and reader.frames[-1].final
    # STOP clears the pause: the next stream plays at once.
    await client.control(sid, PAUSE)
    await client.control(sid, STOP)
    again = await asyncio.wait_for(collect(client, sid, ["Yes."]), 10)
    assert again[-1].final
    await client.end_session(sid)


async def test_two_sessions_pause_independently(client: TTSClient) -> None:
    a, b = new_id("a"), new_id("b")
    for sid in (a, b):
        await client.start_session(sid)
    reader_a, reader_b = Consumer(client, a), Consumer(client, b)
    while min(reader_a.count, reader_b.count) < 5:
        await asyncio.sleep(0.01)
    await client.control(a, PAUSE)
    a_at_ack, b_at_ack = reader_a.count, reader_b.count
    await asyncio.sleep(0.6)
    assert reader_a.count - a_at_ack <= 1, "paused session A kept sending"
    assert reader_b.count - b_at_ack >= 20, "session B must keep streaming while A is paused"
    await client.control(a, RESUME)
    await asyncio.sleep(0.3)
    assert reader_a.count - a_at_ack >= 5, "A streams again after RESUME"
    for sid, reader in ((a, reader_a), (b, reader_b)):
        await client.control(sid, STOP)
        await reader.task
        await client.end_session(sid)


async def test_reload_keeps_the_session_speaking(client: TTSClient) -> None:
    sid = new_id("reload")
    await client.start_session(sid)
    reply = await client.control(sid, RELOAD)
    assert reply.state == tts_pb2.SESSION_STATE_IDLE
    frames = await collect(client, sid, ["Reloaded and still talking."])
    assert frames[-1].final and len(frames) > 20
    await client.end_session(sid)


async def test_an_unpaced_session_sends_faster_than_real_time(client: TTSClient) -> None:
    """A paced stream releases frames at most max_lead_ms ahead of real time; an unpaced one
    (StartSessionRequest.unpaced: for files) as soon as they are made, with the same audio."""
    timings: dict[bool, tuple[float, float]] = {}
    for unpaced in (True, False):
        sid = new_id("unpaced" if unpaced else "paced")
        await client.start_session(sid, options=DETERMINISTIC, unpaced=unpaced)
        began = time.perf_counter()
        frames = await collect(client, sid, [THREE_SENTENCES])
        timings[unpaced] = (time.perf_counter() - began, len(frames) * 0.02)
        await client.end_session(sid)
    (fast, fast_audio), (paced, paced_audio) = timings[True], timings[False]
    assert fast_audio == paced_audio > 5.0
    assert paced >= paced_audio - 0.5  # held to real time (the lead is 200 ms)
    assert fast < 0.6 * fast_audio, (fast, fast_audio)


@pytest.mark.parametrize("order", ["deadline", "arrival"])
async def test_a_new_reply_overtakes_segments_other_streams_do_not_need_yet(  # type: ignore[no-untyped-def]
    start_worker, order: str
) -> None:
    """One synthesis thread, three streams seconds ahead of their listeners, each with its next
    segment queued: by deadline a fourth stream's first segment is rendered next; in arrival
    order (the control) it waits for theirs."""
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock", "options": {"rtf": 0.1}}],
        default_model="mock",
        synthesis_threads=1,
        synthesis_order=order,
        render_ahead_ms=None,  # every busy stream renders ahead: their segments queue
    )
    sentence = "This sentence is long enough to take a while to render on the worker. "
    async with TTSClient(worker.address) as tts:
        first_frames: dict[str, float] = {}

        async def speak(sid: str, text: str) -> None:
            await tts.start_session(sid)
            began = time.perf_counter()
            async for frame in tts.synthesize(sid, [text]):
                first_frames.setdefault(sid, time.perf_counter() - began)
                if frame.final:
                    break

        busy = [asyncio.create_task(speak(f"busy-{i}", sentence * 20)) for i in range(3)]
        while len(first_frames) < 3:  # every busy stream is playing, its next segment queued
            await asyncio.sleep(0.02)
        await asyncio.sleep(2.0)  # each is now seconds of audio ahead of its listener
        await speak("new", "Yes, of course.")
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
    # A segment of `sentence` is ~5 s of mock speech, rendered in ~0.5 s (rtf 0.1). By deadline
    # the new reply waits at most for the segment rendering; in arrival order also for the two
    # queued before it.
    if order == "deadline":
        assert first_frames["new"] < 0.8, first_frames
    else:
        assert first_frames["new"] > 1.0, first_frames


async def test_a_new_reply_overtakes_one_shot_requests_far_ahead_of_real_time(  # type: ignore[no-untyped-def]
    start_worker,
) -> None:
    """One synthesis thread, three unpaced (one-shot) requests for long texts, each seconds
    ahead of a listener playing it from its first frame: a live reply's first segment goes
    before their next segments instead of after every one queued within the slack."""
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock", "options": {"rtf": 0.1}}],
        default_model="mock",
        synthesis_threads=1,
    )
    sentence = "This sentence is long enough to take a while to render on the worker. "
    async with TTSClient(worker.address) as tts:
        sids = [f"one-shot-{i}" for i in range(3)]
        for sid in sids:
            await tts.start_session(sid, unpaced=True)
        await tts.start_session("live")
        frames = dict.fromkeys(sids, 0)

        async def one_shot(sid: str) -> None:
            async for frame in tts.synthesize(sid, [sentence * 20]):
                frames[sid] += 1
                if frame.final:
                    break

        busy = [asyncio.create_task(one_shot(sid)) for sid in sids]
        while min(frames.values()) < 500:  # each ~10 s of audio after ~1.5 s: far ahead
            await asyncio.sleep(0.02)
        began = time.perf_counter()
        async for _frame in tts.synthesize("live", ["Yes, of course."]):
            first = time.perf_counter() - began
            break
        await tts.control("live", STOP)
        for sid in sids:
            await tts.control(sid, STOP)
        await asyncio.gather(*busy, return_exceptions=True)
    # A segment of `sentence` is ~5 s of mock speech, rendered in ~0.5 s: the live reply waits
    # for the one rendering at most. Due "now" (as they were), the one-shots' queued segments
    # would go first for the whole 1.5 s slack.
    assert first < 0.9, first


@pytest.mark.parametrize("slack_ms", [1500, 500])
async def test_a_started_reply_keeps_speaking_through_a_burst_of_new_ones(  # type: ignore[no-untyped-def]
    start_worker, slack_ms: int
) -> None:
    """One synthesis thread. A reply plays its first sentence (~1.1 s) while another stream's
    segment holds the thread and its second sentence waits; four new replies arrive. With the
    default slack its second sentence goes next and it speaks on without a gap; with 500 ms
    (the control) the new replies' first segments go before it and it stops mid-reply."""
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock", "options": {"rtf": 0.2}}],
        default_model="mock",
        synthesis_threads=1,
        first_segment={"mode": "sentence"},
        first_segment_slack_ms=slack_ms,
    )
    async with TTSClient(worker.address) as tts:
        for sid in ("reply", "busy", *(f"new-{i}" for i in range(4))):
            await tts.start_session(sid)
        arrivals: list[float] = []
        started = asyncio.Event()

        async def speak(sid: str, text: str, times: list[float] | None = None) -> None:
            async for frame in tts.synthesize(sid, [text]):
                if times is not None:
                    times.append(time.perf_counter())
                    started.set()
                if frame.final:
                    break

        # "One two three." ~1.1 s of mock speech, rendered in ~0.2 s; then "busy" (~2.9 s of
        # speech, ~0.6 s) takes the thread while "Four five six seven." waits for it.
        reply = asyncio.create_task(speak("reply", "One two three. Four five six seven.", arrivals))
        await asyncio.sleep(0.05)
        busy = asyncio.create_task(speak("busy", "Several words that hold the thread a while."))
        await started.wait()
        new = [speak(f"new-{i}", "Hello there my friend.") for i in range(4)]
        await asyncio.gather(reply, busy, *new)
    # Playout from the first frame's arrival (plus a 150 ms buffer, generous for a loaded
    # machine): how late the latest frame was.
    late_s = max(at - (arrivals[0] + 0.15 + 0.02 * i) for i, at in enumerate(arrivals))
    if slack_ms == 1500:
        assert late_s <= 0, f"a gap of {late_s * 1000:.0f} ms mid-reply"
    else:
        assert late_s > 0.2, late_s  # the control: four first segments went before it


@pytest.mark.parametrize("render_ahead_ms", [2000, None])
async def test_a_paced_reply_renders_its_later_segments_only_as_they_are_needed(  # type: ignore[no-untyped-def]
    start_worker, render_ahead_ms: int | None
) -> None:
    """A long reply stopped after its first second: with render_ahead_ms, the worker rendered
    little more than the lead it keeps; without, the whole text at once (the contrast shows
    the measure can tell them apart)."""
    port = free_port()
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock"}],
        default_model="mock",
        render_ahead_ms=render_ahead_ms,
        metrics={"host": "127.0.0.1", "port": port},
    )
    text = " ".join(["Every one of these sentences takes about three seconds to say."] * 12)
    async with TTSClient(worker.address) as tts:
        await tts.start_session("long")
        frames = 0
        async for _frame in tts.synthesize("long", [text]):
            frames += 1
            if frames == 50:  # one second heard
                break
        await tts.control("long", STOP)
        await asyncio.sleep(0.3)
    rendered = value(scrape(port), "voicefleet_worker_audio_rendered_seconds_total")
    assert frames == 50
    if render_ahead_ms is None:
        assert rendered > 30, rendered  # all twelve sentences
    else:
        assert 1.0 < rendered < 12.0, rendered  # the first segment and the next two or three


async def test_queue_depth_counts_segments_due_not_those_held_for_later(  # type: ignore[no-untyped-def]
    start_worker,
) -> None:
    """The load a router ranks workers by: first segments waiting for the one synthesis thread
    count, and so does an unpaced reply's backlog; a paced reply's later segments, held until
    its listener needs them, do not."""
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock", "options": {"rtf": 0.5}}],
        default_model="mock",
        synthesis_threads=1,
        render_ahead_ms=2000,
    )
    sentence = "This sentence is long enough to take a while to render on the worker. "
    long_text = " ".join(["Every one of these sentences takes about three seconds to say."] * 12)
    async with TTSClient(worker.address) as tts:

        async def depth() -> int:
            return (await tts.get_capabilities()).load.queue_depth

        async def reaches(wanted: int) -> int:
            """The depth once it is `wanted` (TimeoutError after 20 s)."""
            seen = await depth()
            async with asyncio.timeout(20):
                while seen != wanted:
                    await asyncio.sleep(0.05)
                    seen = await depth()
            return seen

        # Three paced replies at once: one renders, each of the others has a segment waiting
        # for the thread; none of their later segments counts.
        calls = []
        for index in range(3):
            await tts.start_session(f"due-{index}")
            calls.append(tts.synthesize(f"due-{index}", [sentence]))
        readers = [asyncio.create_task(anext(aiter(call))) for call in calls]
        assert await reaches(2) == 2
        for _ in range(10):  # and it stays there while they take turns
            assert await depth() <= 2
            await asyncio.sleep(0.05)
        for index, call in enumerate(calls):
            await tts.control(f"due-{index}", STOP)
            call.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert await reaches(0) == 0  # stopped: what they had waiting left the count

        # A long paced reply one second in: rendered ahead, the rest waits for its listener.
        await tts.start_session("held")
        frames = 0
        async for _frame in tts.synthesize("held", [long_text]):
            frames += 1
            if frames == 50:
                held = await depth()
                break
        await tts.control("held", STOP)
        assert frames == 50 and held == 0

        # Unpaced (one-shot speech): every segment is due at once.
        await tts.start_session("unpaced", unpaced=True)
        call = tts.synthesize("unpaced", [long_text])
        await anext(aiter(call))
        backlog = await depth()
        await tts.control("unpaced", STOP)
        call.cancel()
        assert backlog >= 5, backlog
        assert await reaches(0) == 0
