"""Worker gRPC fuzz cases: programs of calls over the whole TTS API (tts.proto), with random
field values, unknown ids, huge texts, out-of-order streams and good or bad tokens, and a runner
that judges a real worker.

A program is a short list of calls. `@0` and `@1` stand for two session ids fresh to the
program (so calls meet each other's sessions); anything else is sent as drawn. Synthesize calls
may run in the background while the following calls PAUSE, STOP, RELOAD or end their session;
at the end the program ends every session it opened, and each stream must then finish.

Oracles: each status is one the RPC documents for bad input (never INTERNAL or UNKNOWN), a bad
token is always UNAUTHENTICATED, a malformed session id is always INVALID_ARGUMENT, frames are
well formed (20 ms, 48 kHz, numbered from 0, `final` only last, spans inside the input), no call
outlives its bound, and when the program is done the worker holds no stream and no queue.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from hypothesis import strategies as st

from tests.fuzz.oracles import Outcome, leaks_internals
from tests.fuzz.stack import MODELS, VOICES, WORKER_TOKEN, WorkerLimits
from voicefleet.fleet.faults import lost_status
from voicefleet.rpc.generated import tts_pb2, tts_pb2_grpc

S = grpc.StatusCode
_COMMON = {S.OK, S.UNAUTHENTICATED, S.INVALID_ARGUMENT}
ALLOWED: dict[str, set[grpc.StatusCode]] = {
    "StartSession": _COMMON | {S.NOT_FOUND, S.ALREADY_EXISTS, S.RESOURCE_EXHAUSTED},
    "EndSession": _COMMON | {S.NOT_FOUND},
    "Control": _COMMON | {S.NOT_FOUND},
    "Synthesize": _COMMON | {S.NOT_FOUND, S.FAILED_PRECONDITION, S.CANCELLED},
    "ListModels": {S.OK, S.UNAUTHENTICATED},
    "GetCapabilities": {S.OK, S.UNAUTHENTICATED},
    "LoadModel": _COMMON | {S.NOT_FOUND},
    "UnloadModel": _COMMON | {S.NOT_FOUND, S.FAILED_PRECONDITION},
}
_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
POOL = ("@0", "@1")

GOOD_AUTH = (f"Bearer {WORKER_TOKEN}", f"bearer  {WORKER_TOKEN} ", f"BEARER {WORKER_TOKEN}")
BAD_AUTH: tuple[str | None, ...] = (
    None,
    "",
    "Bearer",
    "Bearer ",
    f"Basic {WORKER_TOKEN}",
    f"Bearer {WORKER_TOKEN}x",
    f"Bearer {WORKER_TOKEN[:-1]}",
    WORKER_TOKEN,
    "Bearer " + "z" * 4000,
)


@dataclass(frozen=True)
class Call:
    """One RPC: its request fields (TextChunk fields for each chunk of a Synthesize)."""

    rpc: str
    fields: Any
    auth: str | None = GOOD_AUTH[0]
    background: bool = False

    @property
    def authenticated(self) -> bool:
        """Whether the interceptor lets this call through."""
        return self.auth in GOOD_AUTH


# -- strategies ------------------------------------------------------------------------------

_text = st.text(max_size=24)
session_ids = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(POOL),
    st.sampled_from(POOL),
    st.sampled_from(["", " ", "a b", "x" * 129, "y" * 128, "ünï", "ok-id", "../etc", "@0\n"]),
    st.from_regex(_SESSION_ID, fullmatch=True),
    _text,
)
model_ids = st.one_of(st.sampled_from(("", "no-such-model", "MOCK", *MODELS)), _text)
voices = st.one_of(st.sampled_from(("", "nobody", *VOICES)), _text)
languages = st.one_of(st.sampled_from(["", "en-US", "en", "EN-us", "de-DE", "fr-FR", "*"]), _text)
option_values = st.one_of(
    st.sampled_from(["0", "1", "0.5", "2", "9.5", "-1", "nan", "inf", "-inf", "1e308", "1e6"]),
    st.sampled_from(["", " ", "abc", "0x10", "1_0", "\uff11"]),
    st.floats().map(repr),
    _text,
)
options = st.dictionaries(
    st.one_of(st.sampled_from(["rtf", "length_scale", "noise_scale", "speed"]), _text),
    option_values,
    max_size=3,
)
auths = st.one_of(*([st.sampled_from(GOOD_AUTH)] * 6), st.sampled_from(BAD_AUTH))


def chunk_texts(limits: WorkerLimits) -> st.SearchStrategy[str]:
    """Text chunks: speech, blanks, punctuation, unicode, sizes around the chunk limit."""
    n = limits.max_chunk_chars
    return st.one_of(
        st.sampled_from(["Hello there. ", "One, two, three! ", "ok", "Why? ", "Done."]),
        st.sampled_from(["", " ", "\n", "...", "!!!?", "\x00", "—", "1 2 3 4 5 6 7 8 9 10."]),
        st.text(max_size=40),
        st.builds(lambda k, w: w * k, st.integers(n - 2, n + 2), st.sampled_from("a é")),
        st.builds(lambda k: "word " * k, st.integers(1, 2 * n // 5)),
    )


@st.composite
def chunk_streams(draw: st.DrawFn, limits: WorkerLimits) -> list[dict[str, Any]]:
    """The TextChunks of one Synthesize: mostly well ordered, sometimes not."""
    count = draw(st.integers(0, 5))
    sid = draw(session_ids)
    chunks = []
    for index in range(count):
        sequence = draw(
            st.one_of(*([st.just(index)] * 6), st.integers(-2, 8), st.integers(-(2**63), 2**63 - 1))
        )
        last = index == count - 1
        chunks.append(
            {
                "session_id": sid if draw(st.integers(0, 9)) else draw(session_ids),
                "text": draw(chunk_texts(limits)),
                "sequence": sequence,
                "end_of_input": draw(st.booleans()) if last else not draw(st.integers(0, 9)),
            }
        )
    return chunks


def calls(limits: WorkerLimits) -> st.SearchStrategy[Call]:
    """Any one call."""
    start = st.fixed_dictionaries(
        {"session_id": session_ids},
        optional={
            "model_id": model_ids,
            "voice": voices,
            "language": languages,
            "options": options,
        },
    )
    command = st.one_of(
        st.sampled_from(range(5)), st.sampled_from(range(5)), st.integers(-(2**31), 2**31 - 1)
    )
    unary = {
        "StartSession": start,
        "EndSession": st.fixed_dictionaries({"session_id": session_ids}),
        "Control": st.fixed_dictionaries({"session_id": session_ids, "command": command}),
        "ListModels": st.just({}),
        "GetCapabilities": st.just({}),
        "LoadModel": st.fixed_dictionaries({"model_id": model_ids}),
        "UnloadModel": st.fixed_dictionaries({"model_id": model_ids}),
    }
    return st.one_of(
        *(st.builds(Call, st.just(rpc), s, auths) for rpc, s in unary.items()),
        st.builds(Call, st.just("StartSession"), start, auths),
        st.builds(Call, st.just("Control"), unary["Control"], auths),
        *(
            [st.builds(Call, st.just("Synthesize"), chunk_streams(limits), auths, st.booleans())]
            * 3
        ),
    )


def programs(limits: WorkerLimits) -> st.SearchStrategy[list[Call]]:
    """A session's worth of calls, usually starting with a good StartSession of @0."""
    opening = st.builds(
        Call,
        st.just("StartSession"),
        st.fixed_dictionaries(
            {"session_id": st.just("@0")},
            optional={"model_id": st.sampled_from(MODELS), "voice": st.sampled_from(VOICES)},
        ),
    )
    return st.builds(
        lambda first, rest: [*first, *rest],
        st.one_of(st.just([]), opening.map(lambda c: [c]), opening.map(lambda c: [c])),
        st.lists(calls(limits), min_size=1, max_size=6),
    )


# -- the runner ------------------------------------------------------------------------------


@dataclass
class _Run:
    stub: tts_pb2_grpc.TTSStub
    ids: dict[str, str]
    bound_s: float
    started: set[str] = field(default_factory=set)
    streams: list[asyncio.Task[None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost_status: int = 0

    def sid(self, raw: str) -> str:
        return self.ids.get(raw, raw)

    def metadata(self, call: Call) -> tuple[tuple[str, str], ...]:
        return () if call.auth is None else (("authorization", call.auth),)


def _request(call: Call, run: _Run) -> Any:
    fields = dict(call.fields)
    if "session_id" in fields:
        fields["session_id"] = run.sid(fields["session_id"])
    message = getattr(tts_pb2, f"{call.rpc}Request", None)
    if message is None:
        raise AssertionError(call.rpc)
    return message(**fields)


def _judge_status(
    call: Call, first_id: str | None, code: grpc.StatusCode, details: str
) -> str | None:
    if leaks_internals(details):
        return f"{call.rpc}: traceback text in the status details: {details[:300]}"
    if not call.authenticated:
        return None if code is S.UNAUTHENTICATED else f"{call.rpc} with a bad token: {code.name}"
    if code not in ALLOWED[call.rpc]:
        return f"{call.rpc}: {code.name} ({details[:200]})"
    malformed = first_id is not None and not _SESSION_ID.fullmatch(first_id)
    if malformed and code not in (S.CANCELLED, S.INVALID_ARGUMENT):
        return f"{call.rpc} with session id {first_id!r}: {code.name}, not INVALID_ARGUMENT"
    return None


async def _unary(call: Call, run: _Run) -> None:
    request = _request(call, run)
    method = getattr(run.stub, call.rpc)
    sid = getattr(request, "session_id", None)
    try:
        reply = await method(request, metadata=run.metadata(call), timeout=run.bound_s)
    except grpc.aio.AioRpcError as error:
        if error.code() is S.DEADLINE_EXCEEDED:
            raise TimeoutError from None
        problem = _judge_status(call, sid, error.code(), error.details() or "")
        if problem:
            run.problems.append(problem)
        return
    problem = _judge_status(call, sid, S.OK, "")
    if problem:
        run.problems.append(problem)
    if call.rpc == "EndSession":
        run.started.discard(request.session_id)
    if call.rpc == "StartSession":
        run.started.add(request.session_id)
        if reply.format.sample_rate != 48_000 or reply.format.frame_samples != 960:
            run.problems.append(f"StartSession answered format {reply.format}")


async def _stream(call: Call, run: _Run) -> None:
    chunks = [
        tts_pb2.TextChunk(**{**c, "session_id": run.sid(c["session_id"])}) for c in call.fields
    ]
    first_id = chunks[0].session_id if chunks else None
    total = sum(len(c.text) for c in chunks)

    async def requests() -> AsyncIterator[tts_pb2.TextChunk]:
        for chunk in chunks:
            yield chunk

    rpc = run.stub.Synthesize(requests(), metadata=run.metadata(call), timeout=4 * run.bound_s)
    frames: list[tts_pb2.AudioFrame] = []
    try:
        async for frame in rpc:
            frames.append(frame)
            if not call.background and len(frames) >= 25:
                rpc.cancel()  # the client walks away mid-stream
                break
    except grpc.aio.AioRpcError as error:
        if error.code() is S.DEADLINE_EXCEEDED:
            run.problems.append(f"Synthesize outlived {4 * run.bound_s:g} s (hung stream)")
            return
        if lost_status(error):
            run.lost_status += 1  # the worker's own status is gone (grpc/grpc#36066)
            return
        problem = _judge_status(call, first_id, error.code(), error.details() or "")
        if problem:
            run.problems.append(problem)
    problem = _judge_frames(frames, first_id, total)
    if problem:
        run.problems.append(problem)


def _judge_frames(frames: list[tts_pb2.AudioFrame], sid: str | None, total: int) -> str | None:
    segment = 0
    for index, frame in enumerate(frames):
        if len(frame.pcm) != 1920 or frame.sample_rate != 48_000 or frame.frame_ms != 20:
            return f"frame {index}: {len(frame.pcm)} bytes at {frame.sample_rate} Hz"
        if frame.sequence != index or frame.session_id != sid:
            return f"frame {index}: sequence {frame.sequence}, session {frame.session_id!r}"
        if frame.final and index != len(frames) - 1:
            return f"frame {index} is final but more followed"
        if frame.segment_index < segment:
            return f"frame {index}: segment {frame.segment_index} after {segment}"
        segment = frame.segment_index
        if not 0 <= frame.text_start <= frame.text_end <= total:
            return f"frame {index}: span {frame.text_start}-{frame.text_end} of {total} chars"
    return None


async def run_program(
    channel: grpc.aio.Channel, program: list[Call], case: int, bound_s: float = 5.0
) -> Outcome:
    """Run one program against a worker and judge it."""
    run = _Run(tts_pb2_grpc.TTSStub(channel), {p: f"fz{case}-{p[1:]}" for p in POOL}, bound_s)
    target = "grpc." + "+".join(sorted({c.rpc for c in program}))
    target = "grpc.stream" if "Synthesize" in target else "grpc.unary"
    try:
        for call in program:
            if call.rpc == "Synthesize":
                task = asyncio.create_task(_stream(call, run))
                run.streams.append(task)
                if not call.background:
                    await task
                else:
                    await asyncio.sleep(0)
            else:
                await _unary(call, run)
        await _clean_up(run)
    except TimeoutError:
        for task in run.streams:
            task.cancel()
        return Outcome(target, hung=True)
    return Outcome(target, problem="; ".join(run.problems) or None, lost_status=run.lost_status)


async def _clean_up(run: _Run) -> None:
    """End every session the program opened; its streams must then end, and with them the
    worker's stream and queue counts."""
    good = (("authorization", GOOD_AUTH[0]),)
    for sid in sorted(run.started | set(run.ids.values())):
        try:
            await run.stub.EndSession(
                tts_pb2.EndSessionRequest(session_id=sid), metadata=good, timeout=run.bound_s
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is S.DEADLINE_EXCEEDED:
                raise TimeoutError from None
            if error.code() is not S.NOT_FOUND or sid in run.started:
                run.problems.append(f"cleanup EndSession({sid}): {error.code().name}")
    if run.streams:
        async with asyncio.timeout(run.bound_s):
            await asyncio.gather(*run.streams)


async def worker_load(channel: grpc.aio.Channel) -> tts_pb2.GetCapabilitiesResponse:
    """The worker's capability record (sessions, streams, queue)."""
    stub = tts_pb2_grpc.TTSStub(channel)
    good = (("authorization", GOOD_AUTH[0]),)
    reply: tts_pb2.GetCapabilitiesResponse = await stub.GetCapabilities(
        tts_pb2.GetCapabilitiesRequest(), metadata=good, timeout=5
    )
    return reply


async def settled(channel: grpc.aio.Channel, within_s: float = 3.0) -> str | None:
    """None once the worker has no stream, queued segment or session left; else what is left."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        caps = await worker_load(channel)
        left = (caps.active_sessions, caps.load.active_streams, caps.load.queue_depth)
        if left == (0, 0, 0):
            return None
        if asyncio.get_running_loop().time() > deadline:
            return f"worker left with sessions/streams/queue {left}"
        await asyncio.sleep(0.05)


async def grpc_canary(channel: grpc.aio.Channel, name: str, bound_s: float = 15.0) -> str | None:
    """A fresh normal session gets audio up to a final frame. None when it works."""
    stub = tts_pb2_grpc.TTSStub(channel)
    good = (("authorization", GOOD_AUTH[0]),)
    try:
        async with asyncio.timeout(bound_s):
            await stub.StartSession(
                tts_pb2.StartSessionRequest(session_id=name), metadata=good, timeout=bound_s
            )
            chunk = tts_pb2.TextChunk(session_id=name, text="Hello there.", end_of_input=True)

            async def one() -> AsyncIterator[tts_pb2.TextChunk]:
                yield chunk

            frames = [f async for f in stub.Synthesize(one(), metadata=good)]
            await stub.EndSession(tts_pb2.EndSessionRequest(session_id=name), metadata=good)
    except TimeoutError:
        return f"worker canary got no final frame within {bound_s} s"
    except grpc.aio.AioRpcError as error:
        return f"worker canary failed: {error.code().name}: {error.details()}"
    if not frames or not frames[-1].final:
        return f"worker canary: {len(frames)} frames, no final one"
    return None
