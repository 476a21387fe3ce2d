"""WebSocket fuzz cases: strategies for frames and frame sequences, an independent model of
what docs/protocol.md says the server answers, and a runner that checks a real orchestrator.

The model is written from the documentation, not from `protocol.py`: per frame it predicts the
protocol error code (or a set of acceptable ones), whether `ready` follows, and whether the
server closes (and with which code). The runner sends the frames, then a probe of an unknown
type whose `unknown_type` answer marks the end of the server's work (errors come back in
order); the protocol errors it saw must be exactly the predicted ones.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from hypothesis import strategies as st

from tests.fuzz.oracles import Outcome, leaks_internals
from tests.fuzz.stack import MODELS, ORCHESTRATOR_TOKEN, VOICES, WsLimits

PROTOCOL_CODES = frozenset(
    {
        "bad_json",
        "bad_message",
        "unknown_type",
        "hello_required",
        "already_started",
        "bad_sample_rate",
        "odd_length_pcm",
        "message_too_large",
        "text_too_long",
        "unauthorized",
    }
)
TURN_CODES = frozenset(
    {"asr_failed", "tts_failed", "responder_failed", "tts_rejected", "reply_truncated"}
)
DOCUMENTED_CODES = PROTOCOL_CODES | TURN_CODES
SERVER_TYPES = frozenset(
    {
        "ready",
        "state",
        "transcript",
        "agent_text",
        "audio_start",
        "audio_pause",
        "audio_resume",
        "audio_cancel",
        "audio_end",
        "metrics",
        "error",
    }
)
PROBE = json.dumps({"type": "fuzz.probe"})
FRAME_BYTES = 1920


@dataclass(frozen=True)
class Text:
    """A text frame."""

    data: str

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 160 else f"{self.data[:160]}…({len(self.data)})"
        return f"Text({shown!r})"


@dataclass(frozen=True)
class Binary:
    """A binary frame."""

    data: bytes

    def __repr__(self) -> str:
        return f"Binary({len(self.data)} bytes, {self.data[:8]!r}…)"


Frame = Text | Binary

# -- strategies ------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_junk: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
_surrogate = st.integers(0xD800, 0xDFFF).map(chr)
_words = st.sampled_from(["Hello there.", "One, two, three!", "Why?", "ok", "Tschüß 👋 mañana"])
_unicode = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def _sized_text(limit: int) -> st.SearchStrategy[str]:
    """Strings around a size limit: just under, at, just over."""
    return st.builds(
        lambda n, ch: ch * n, st.integers(max(0, limit - 3), limit + 3), st.sampled_from("aé ")
    )


def text_values(limits: WsLimits) -> st.SearchStrategy[Any]:
    """What a `text.text` may be: speech, blanks, unicode, surrogates, sizes, junk."""
    return st.one_of(
        _words,
        st.sampled_from(["", " ", "\n\t ", "\x00", "a\u200bb", "\u202eevil"]),
        _unicode,
        st.builds(lambda a, s, b: a + s + b, _words, _surrogate, _unicode),
        _sized_text(limits.max_text_chars),
        json_junk,
    )


def hello_objects(limits: WsLimits) -> st.SearchStrategy[dict[str, Any]]:
    """hello with any mix of good, bad and missing fields."""
    rate = st.one_of(
        st.sampled_from([8000, 16000, 22050, 44100, 48000]),
        st.integers(7990, 8010),
        st.integers(47_990, 48_010),
        st.integers(),
        st.floats(),
        json_junk,
    )
    optional = {
        "language": st.one_of(st.sampled_from(["en", "en-US", "", "xx-YY"]), json_junk),
        "voice": st.one_of(st.sampled_from(("", "nobody", *VOICES)), _unicode, json_junk),
        "model": st.one_of(st.sampled_from(("", "no-such-model", *MODELS)), json_junk),
        "token": st.one_of(
            st.just(ORCHESTRATOR_TOKEN),
            st.just(ORCHESTRATOR_TOKEN),
            st.sampled_from(["", ORCHESTRATOR_TOKEN[:-1], ORCHESTRATOR_TOKEN + " "]),
            json_junk,
        ),
        "protocol_version": st.one_of(st.just(1), st.integers(), json_junk),
    }
    return st.fixed_dictionaries({"type": st.just("hello"), "sample_rate": rate}, optional=optional)


def good_hello() -> st.SearchStrategy[dict[str, Any]]:
    """A hello the server accepts."""
    return st.fixed_dictionaries(
        {
            "type": st.just("hello"),
            "sample_rate": st.sampled_from([8000, 16000, 24000, 48000]),
            "token": st.just(ORCHESTRATOR_TOKEN),
        },
        optional={
            "language": st.just("en"),
            "voice": st.sampled_from(("", *VOICES)),
            "model": st.sampled_from(("", MODELS[0])),
        },
    )


def control_objects(limits: WsLimits) -> st.SearchStrategy[dict[str, Any]]:
    """text, interrupt and bye, valid-shaped or not."""
    text = st.fixed_dictionaries(
        {"type": st.just("text"), "text": text_values(limits)},
        optional={"mode": st.one_of(st.sampled_from(["say", "answer", "SAY", ""]), json_junk)},
    )
    bare = st.fixed_dictionaries(
        {"type": st.sampled_from(["interrupt", "bye"])},
        optional={"reason": json_junk},
    )
    return st.one_of(text, text, bare)


def _mutated(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """An object with its type dropped or replaced, or a field added."""

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        obj = dict(draw(objects))
        how = draw(st.sampled_from(["drop_type", "bad_type", "extra", "unwrap", "wrap"]))
        if how == "drop_type":
            obj.pop("type")
        elif how == "bad_type":
            obj["type"] = draw(st.one_of(st.text(max_size=10), json_junk))
        elif how == "extra":
            obj[draw(st.text(min_size=1, max_size=8))] = draw(json_junk)
        elif how == "unwrap":
            return list(obj.values())
        else:
            return [obj]
        return obj

    return mutate()


def _dump(value: Any, ascii_only: bool) -> str:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # a lone surrogate: only its \u escape travels as UTF-8
        return json.dumps(value)


def _raw_texts(limits: WsLimits) -> st.SearchStrategy[str]:
    """Text frames that are not (Python-decodable) JSON objects."""
    nesting = st.integers(1, 30_000)
    return st.one_of(
        _unicode,
        st.sampled_from(["", "{", '{"type":', "NaN", "Infinity", "null", "[]", '"hello"', "{}"]),
        nesting.map(lambda n: "[" * n + "]" * n),
        nesting.map(lambda n: '{"a":' * n + "1" + "}" * n),
        st.integers(4000, 6000).map(lambda n: '{"type":"hello","sample_rate":' + "1" * n + "}"),
        _sized_text(limits.max_message_bytes),
    )


def text_frames(limits: WsLimits) -> st.SearchStrategy[Frame]:
    """Any text frame."""
    objects = st.one_of(hello_objects(limits), control_objects(limits))
    values = st.one_of(objects, objects, _mutated(objects), json_junk)
    return st.one_of(
        st.builds(lambda v, a: Text(_dump(v, a)), values, st.booleans()),
        st.builds(Text, _raw_texts(limits)),
        st.builds(  # a valid text message padded to around max_message_bytes
            lambda n: Text(json.dumps({"type": "text", "text": "a" * n})),
            st.integers(limits.max_message_bytes - 30, limits.max_message_bytes),
        ),
    )


def binary_frames(limits: WsLimits) -> st.SearchStrategy[Frame]:
    """Any binary frame: empty, odd, tiny, 20 ms, around the size limit and the hard cap."""
    quiet = st.binary(max_size=64).map(lambda b: bytes(x & 0x07 for x in b))
    sizes = st.one_of(
        st.sampled_from([0, 1, 2, 3, 319, 320, 321, 640, 641, 1920]),
        st.integers(limits.max_message_bytes - 2, limits.max_message_bytes + 2),
    )
    over_cap = Binary(bytes(limits.message_cap_bytes + 2))
    return st.one_of(
        st.builds(Binary, st.binary(max_size=64)),
        st.builds(Binary, quiet),
        st.builds(Binary, quiet),
        sizes.map(lambda n: Binary(bytes(n))),
        sizes.map(lambda n: Binary(bytes(n))),
        st.just(over_cap),
    )


def frames(limits: WsLimits) -> st.SearchStrategy[Frame]:
    """Any frame, mostly text."""
    return st.one_of(text_frames(limits), text_frames(limits), binary_frames(limits))


def single_frame_cases(limits: WsLimits) -> st.SearchStrategy[list[Frame]]:
    """One fuzzed frame, before hello or right after a good one."""
    hello = good_hello().map(lambda h: Text(json.dumps(h)))
    return st.one_of(
        st.builds(lambda f: [f], frames(limits)),
        st.builds(lambda h, f: [h, f], hello, frames(limits)),
    )


def sequence_cases(limits: WsLimits) -> st.SearchStrategy[list[Frame]]:
    """Sequences: frames before hello, a hello (good, fuzzed or none), then anything, including
    repeated hellos, audio, text turns, interrupts and bye mid-stream."""
    hello = st.one_of(
        good_hello().map(lambda h: [Text(json.dumps(h))]),
        good_hello().map(lambda h: [Text(json.dumps(h))]),
        hello_objects(limits).map(lambda h: [Text(_dump(h, True))]),
        st.just([]),
    )
    speech = st.sampled_from(["Hello there.", "Say this, then stop."])
    turn = st.builds(
        lambda t, m: Text(json.dumps({"type": "text", "text": t, "mode": m})),
        speech,
        st.sampled_from(["say", "answer"]),
    )
    after = st.one_of(
        frames(limits),
        turn,
        st.just(Text('{"type":"interrupt"}')),
        st.just(Text('{"type":"bye"}')),
        st.just(Binary(bytes(640))),
        good_hello().map(lambda h: Text(json.dumps(h))),
    )
    return st.builds(
        lambda a, b, c: [*a, *b, *c],
        st.lists(frames(limits), max_size=2),
        hello,
        st.lists(after, max_size=6),
    )


# -- the model -------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    """A JSON string that is valid Unicode (a lone surrogate escape is not)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# From docs/protocol.md, "Client -> server": field -> (check, required).
_FIELDS: dict[str, dict[str, tuple[Any, bool]]] = {
    "hello": {
        "sample_rate": (_is_int, True),
        "language": (_is_str, False),
        "voice": (_is_str, False),
        "model": (_is_str, False),
        "token": (_is_str, False),
        "protocol_version": (_is_int, False),
    },
    "text": {
        "text": (_is_str, True),
        "mode": (lambda v: isinstance(v, str) and v in ("answer", "say"), False),
    },
    "interrupt": {},
    "bye": {},
}


@dataclass(frozen=True)
class Reaction:
    """What the server should do with one frame."""

    errors: frozenset[str] = frozenset()  # the acceptable codes; empty: no error
    close: int | None = None
    ready: bool = False


@dataclass
class ServerModel:
    """One connection as docs/protocol.md describes it."""

    limits: WsLimits
    opened: bool = False
    text_chars: int = 0

    def react(self, frame: Frame) -> Reaction:
        """The documented reaction to a frame in the current state (and the state moves)."""
        size = len(frame.data) if isinstance(frame, Binary) else len(frame.data.encode())
        if size > self.limits.message_cap_bytes:
            return Reaction(close=1009)
        if size > self.limits.max_message_bytes:
            return _error("message_too_large")
        if isinstance(frame, Binary):
            if not self.opened:
                return _error("hello_required")
            return _error("odd_length_pcm") if size % 2 else Reaction()
        return self._react_json(frame.data)

    def _react_json(self, data: str) -> Reaction:
        try:
            value = json.loads(data)
        except RecursionError:  # valid JSON nested deeper than a message can be
            return _error("bad_json", "bad_message")
        except ValueError as error:  # not JSON, or an integer beyond Python's digit limit
            if isinstance(error, json.JSONDecodeError):
                return _error("bad_json")
            return _error("bad_json", "bad_message")
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            return _error("bad_message")
        kind = value.pop("type")
        spec = _FIELDS.get(kind)
        if spec is None:
            return _error("unknown_type")
        if set(value) - set(spec) or any(
            required and name not in value for name, (_, required) in spec.items()
        ):
            return _error("bad_message")
        if not all(spec[name][0](item) for name, item in value.items()):
            return _error("bad_message")
        if kind == "hello" and not 8000 <= value["sample_rate"] <= 48_000:
            return _error("bad_sample_rate")
        if not self.opened:
            if kind != "hello":
                return _error("hello_required")
            if value.get("token", "") != ORCHESTRATOR_TOKEN:
                return Reaction(frozenset({"unauthorized"}), close=1008)
            self.opened = True
            return Reaction(ready=True)
        if kind == "hello":
            return _error("already_started")
        if kind == "bye":
            return Reaction(close=1000)
        if kind == "text":
            text = value["text"]
            if len(text) > self.limits.max_text_chars:
                return _error("text_too_long")
            if self.text_chars + len(text) > self.limits.max_session_text_chars:
                return _error("text_too_long")
            if not text.split():
                return _error("bad_message")
            self.text_chars += len(text)
        return Reaction()


def _error(*codes: str) -> Reaction:
    return Reaction(frozenset(codes))


@dataclass
class Plan:
    """The frames to send (up to the one the server closes on) and what must come back."""

    frames: list[Frame]
    errors: list[frozenset[str]] = field(default_factory=list)
    ready: int = 0
    close: int | None = None


def plan(frames: list[Frame], limits: WsLimits) -> Plan:
    """Run the model over a case."""
    model = ServerModel(limits)
    out = Plan([])
    for frame in frames:
        out.frames.append(frame)
        reaction = model.react(frame)
        if reaction.errors:
            out.errors.append(reaction.errors)
        out.ready += reaction.ready
        if reaction.close is not None:
            out.close = reaction.close
            return out
    out.errors.append(frozenset({"unknown_type"}))  # the probe
    return out


# -- the runner ------------------------------------------------------------------------------


@dataclass
class _Seen:
    errors: list[dict[str, Any]] = field(default_factory=list)
    ready: int = 0
    close: int | None = None
    problems: list[str] = field(default_factory=list)


async def run_ws_case(
    http: aiohttp.ClientSession,
    url: str,
    frames: list[Frame],
    limits: WsLimits,
    target: str,
    bound_s: float = 15.0,
) -> Outcome:
    """Send a case to a real orchestrator and judge what came back."""
    expected = plan(frames, limits)
    seen = _Seen()
    try:
        async with asyncio.timeout(bound_s), http.ws_connect(url, max_msg_size=0) as ws:
            for frame in expected.frames:
                if isinstance(frame, Text):
                    await ws.send_str(frame.data)
                else:
                    await ws.send_bytes(frame.data)
            if expected.close is None:
                await ws.send_str(PROBE)
            await _read(ws, seen, wait_close=expected.close is not None)
    except TimeoutError:
        return Outcome(target, hung=True)
    except (aiohttp.ClientError, ConnectionError) as error:
        seen.problems.append(f"connection failed: {type(error).__name__}: {error}")
    return Outcome(target, problem=_judge(expected, seen))


async def _read(ws: aiohttp.ClientWebSocketResponse, seen: _Seen, wait_close: bool) -> None:
    while True:
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.BINARY:
            if len(message.data) != FRAME_BYTES:
                seen.problems.append(f"a reply frame of {len(message.data)} bytes")
            continue
        if message.type is not aiohttp.WSMsgType.TEXT:
            seen.close = ws.close_code
            if not wait_close:
                seen.problems.append(f"closed ({seen.close}) before the probe's answer")
            return
        event = _event(message.data, seen)
        if event.get("type") == "ready":
            seen.ready += 1
        if event.get("type") != "error":
            continue
        code = event.get("code")
        if code not in DOCUMENTED_CODES:
            seen.problems.append(f"undocumented error code {code!r}: {event}")
        if code in PROTOCOL_CODES:
            seen.errors.append(event)
            if event.get("fatal") is not (code == "unauthorized"):
                seen.problems.append(f"wrong fatal flag: {event}")
            if not wait_close and code == "unknown_type" and "fuzz.probe" in event["message"]:
                return


def _event(text: str, seen: _Seen) -> dict[str, Any]:
    if leaks_internals(text):
        seen.problems.append(f"traceback text sent to the client: {text[:300]}")
    try:
        event = json.loads(text)
    except ValueError:
        seen.problems.append(f"server sent non-JSON text {text[:100]!r}")
        return {}
    if not isinstance(event, dict) or event.get("type") not in SERVER_TYPES:
        seen.problems.append(f"undocumented server message {text[:200]}")
        return {}
    return event


def _judge(expected: Plan, seen: _Seen) -> str | None:
    problems = list(seen.problems)
    codes = [e.get("code") for e in seen.errors]
    if len(codes) != len(expected.errors) or any(
        code not in allowed for code, allowed in zip(codes, expected.errors, strict=False)
    ):
        wanted = [sorted(a) if len(a) > 1 else next(iter(a)) for a in expected.errors]
        problems.append(f"protocol errors {codes}, documented {wanted}")
    if seen.ready != expected.ready:
        problems.append(f"{seen.ready} ready events, documented {expected.ready}")
    if expected.close is not None and seen.close != expected.close:
        problems.append(f"closed with {seen.close}, documented {expected.close}")
    return "; ".join(problems) or None


async def ws_canary(http: aiohttp.ClientSession, url: str, bound_s: float = 30.0) -> str | None:
    """A fresh normal session: hello, a `say` turn, audio until audio_end. None when it works."""
    hello = {"type": "hello", "sample_rate": 16000, "token": ORCHESTRATOR_TOKEN}
    frames = 0
    try:
        async with asyncio.timeout(bound_s), http.ws_connect(url) as ws:
            await ws.send_str(json.dumps(hello))
            await ws.send_str(json.dumps({"type": "text", "text": "Hello there.", "mode": "say"}))
            async for message in ws:
                if message.type is aiohttp.WSMsgType.BINARY:
                    frames += 1
                    continue
                event = json.loads(message.data)
                if event["type"] == "error":
                    return f"canary got an error: {event}"
                if event["type"] == "audio_end":
                    await ws.send_str('{"type":"bye"}')
                    return None if frames else "canary reply had no audio"
            return f"canary socket closed ({ws.close_code}) before audio_end"
    except TimeoutError:
        return f"canary got no audio_end within {bound_s} s ({frames} frames)"
    except (aiohttp.ClientError, ConnectionError) as error:
        return f"canary could not connect: {error}"
