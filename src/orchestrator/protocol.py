"""The WebSocket protocol (`/ws`): one small frozen dataclass per message, one codec.

Text frames carry JSON objects with a "type"; binary frames carry PCM16 mono little-endian
audio (client -> server at the rate declared in `hello`; server -> client 48 kHz, exactly 960
samples per frame). docs/protocol.md documents every message.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from voicefleet.orchestrator.protocol_tools import (
    ToolCancelled,
    ToolRequest,
    ToolResponse,
    ToolResult,
    TranscriptWord,
)

PROTOCOL_VERSION = 1
MIN_INPUT_RATE = 8_000
MAX_INPUT_RATE = 48_000
ECHO_MODES = ("auto", "on", "off", "client")  # hello.echo_cancellation


class ProtocolError(Exception):
    """A client message that cannot be accepted; `code` is the stable error code sent back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- client -> server --------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """First message: the audio the client sends, and what it wants."""

    type: ClassVar[str] = "hello"
    sample_rate: int
    language: str = "en"
    voice: str = ""
    model: str = ""
    token: str = ""
    # auto: the server cancels the echo of its replies on a WebSocket (not on LiveKit, where
    # the browser's WebRTC does); on / off: always / never; client: the client cancels it
    # itself (a browser with getUserMedia echoCancellation), so the server does not.
    echo_cancellation: str = "auto"
    protocol_version: int = PROTOCOL_VERSION
    # OpenAI function tools the client answers (tool_request / tool_response); checked against
    # the orchestrator's limits when the session opens (bad_tools).
    tools: list[Any] = field(default_factory=list)
    transcript_words: bool = False  # final transcripts carry timed words (costs latency)


@dataclass(frozen=True)
class SpeakText:
    """Text instead of audio: `answer` runs it through the responder, `say` speaks it as is."""

    type: ClassVar[str] = "text"
    text: str
    mode: Literal["answer", "say"] = "answer"


@dataclass(frozen=True)
class Interrupt:
    """Stop the agent's current reply."""

    type: ClassVar[str] = "interrupt"


@dataclass(frozen=True)
class Bye:
    """Hang up."""

    type: ClassVar[str] = "bye"


ClientMessage = Hello | SpeakText | Interrupt | Bye | ToolResponse
_CLIENT_TYPES: dict[str, type[Any]] = {
    cls.type: cls for cls in (Hello, SpeakText, Interrupt, Bye, ToolResponse)
}

# -- server -> client --------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFormat:
    """The format of every binary frame the server sends."""

    sample_rate: int = 48_000
    channels: int = 1
    frame_samples: int = 960
    encoding: str = "pcm_s16le"


@dataclass(frozen=True)
class Ready:
    """The session is open."""

    type: ClassVar[str] = "ready"
    session_id: str
    input_sample_rate: int
    output: OutputFormat = field(default_factory=OutputFormat)
    echo_cancellation: bool = False  # the server cancels its replies' echo in this session
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class StateChanged:
    """The session's state machine moved."""

    type: ClassVar[str] = "state"
    state: str
    previous: str
    reason: str = ""


@dataclass(frozen=True)
class TranscriptEvent:
    """What the person said: partials while speaking, one final per utterance."""

    type: ClassVar[str] = "transcript"
    text: str
    final: bool
    turn: int
    words: list[TranscriptWord] | None = None  # finals, with hello.transcript_words
    confidence: float | None = None  # the words' mean confidence, likewise


@dataclass(frozen=True)
class AgentText:
    """Text the agent is about to speak, as the responder produces it."""

    type: ClassVar[str] = "agent_text"
    text: str
    turn: int
    final: bool = False
    filler: bool = False  # said while waiting (a filler phrase), not the model's words


@dataclass(frozen=True)
class AudioStart:
    """Binary frames of a reply follow."""

    type: ClassVar[str] = "audio_start"
    turn: int
    sample_rate: int = 48_000


@dataclass(frozen=True)
class AudioEnd:
    """The reply's last frame has been sent; `text` is what its frames spoke."""

    type: ClassVar[str] = "audio_end"
    turn: int
    frames: int
    text: str = ""


@dataclass(frozen=True)
class AudioPause:
    """Possible barge-in: pause playback now, keep the buffer."""

    type: ClassVar[str] = "audio_pause"
    turn: int
    input_ms: float = 0.0  # position in the client's audio stream that triggered the pause


@dataclass(frozen=True)
class AudioResume:
    """False alarm: resume playback where it paused."""

    type: ClassVar[str] = "audio_resume"
    turn: int


@dataclass(frozen=True)
class AudioCancel:
    """Drop buffered playback now (barge-in or interrupt)."""

    type: ClassVar[str] = "audio_cancel"
    turn: int
    reason: str


@dataclass(frozen=True)
class TurnMetrics:
    """Latencies of one turn, in milliseconds (absent when not measured)."""

    type: ClassVar[str] = "metrics"
    turn: int
    endpoint_ms: float | None = None
    asr_ms: float | None = None
    asr_queue_ms: float | None = None  # of the transcription that ended the turn: waiting for ASR
    first_frame_ms: float | None = None
    ttfa_ms: float | None = None
    barge_in_ms: float | None = None
    end_of_turn: str | None = None  # how the turn's end was decided: silence, semantic/<verdict>


@dataclass(frozen=True)
class ErrorEvent:
    """Something went wrong; `code` is stable, `message` is for people."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False


ServerMessage = (
    Ready
    | StateChanged
    | TranscriptEvent
    | AgentText
    | AudioStart
    | AudioEnd
    | AudioPause
    | AudioResume
    | AudioCancel
    | TurnMetrics
    | ErrorEvent
    | ToolRequest
    | ToolResult
    | ToolCancelled
)
_SERVER_TYPES: dict[str, type[Any]] = {
    cls.type: cls
    for cls in (
        Ready,
        StateChanged,
        TranscriptEvent,
        AgentText,
        AudioStart,
        AudioEnd,
        AudioPause,
        AudioResume,
        AudioCancel,
        TurnMetrics,
        ErrorEvent,
        ToolRequest,
        ToolResult,
        ToolCancelled,
    )
}


def to_json(message: ClientMessage | ServerMessage) -> str:
    """Encode any message as its JSON text frame."""
    payload = {"type": message.type, **dataclasses.asdict(message)}
    return json.dumps(payload, separators=(",", ":"))


def _decode(text: str, types: dict[str, type[Any]]) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProtocolError("bad_json", f"message is not valid JSON: {error.msg}") from None
    except RecursionError:  # valid JSON, nested deeper than the decoder goes
        raise ProtocolError("bad_message", "message is nested too deeply") from None
    except ValueError:  # an integer beyond Python's digit limit (int_max_str_digits)
        raise ProtocolError("bad_message", "message has a number too long to read") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("bad_message", 'a message must be a JSON object with a "type"')
    kind = data.pop("type")
    cls = types.get(kind)
    if cls is None:
        known = ", ".join(sorted(types))
        raise ProtocolError("unknown_type", f"unknown message type {kind!r} (known: {known})")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ProtocolError("bad_message", f"{kind}: unknown field(s) {', '.join(unknown)}")
    if cls is Ready and isinstance(data.get("output"), dict):
        data["output"] = OutputFormat(**data["output"])
    if cls is TranscriptEvent and isinstance(data.get("words"), list):
        data["words"] = [TranscriptWord(**w) for w in data["words"] if isinstance(w, dict)]
    try:
        message = cls(**data)
    except TypeError as error:
        raise ProtocolError("bad_message", f"{kind}: {error}") from None
    _check_types(kind, message)
    return message


def _check_types(kind: str, message: Any) -> None:
    for item in dataclasses.fields(message):
        value = getattr(message, item.name)
        expected = {"int": int, "str": str, "bool": bool}.get(str(item.type))
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProtocolError("bad_message", f"{kind}.{item.name} must be an integer")
        if expected is not None and expected is not int and not isinstance(value, expected):
            raise ProtocolError("bad_message", f"{kind}.{item.name} must be a {expected.__name__}")
        if expected is str and not _is_unicode(value):
            # JSON may escape a lone surrogate ("\ud800"): no UTF-8 for the worker or a log.
            raise ProtocolError("bad_message", f"{kind}.{item.name} is not valid Unicode")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def client_message_from_json(text: str) -> ClientMessage:
    """Decode and validate a client text frame; ProtocolError with a stable code otherwise."""
    message: ClientMessage = _decode(text, _CLIENT_TYPES)
    if isinstance(message, Hello) and not MIN_INPUT_RATE <= message.sample_rate <= MAX_INPUT_RATE:
        raise ProtocolError(
            "bad_sample_rate",
            f"hello.sample_rate must be {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz, "
            f"got {message.sample_rate}",
        )
    if isinstance(message, Hello) and message.echo_cancellation not in ECHO_MODES:
        raise ProtocolError(
            "bad_message",
            f"hello.echo_cancellation must be one of {', '.join(ECHO_MODES)}, "
            f"got {message.echo_cancellation!r}",
        )
    if isinstance(message, ToolResponse) and not message.request_id:
        raise ProtocolError("bad_message", "tool_response.request_id is empty")
    if isinstance(message, SpeakText) and message.mode not in ("answer", "say"):
        raise ProtocolError(
            "bad_message", f'text.mode must be "answer" or "say", got {message.mode!r}'
        )
    return message


def server_message_from_json(text: str) -> ServerMessage:
    """Decode a server text frame (clients and tests use this)."""
    message: ServerMessage = _decode(text, _SERVER_TYPES)
    return message


class ControlTarget(Protocol):
    """What a control message acts on (a session, whatever the transport)."""

    async def push_text(self, text: str, mode: str) -> None:
        """A typed turn."""

    async def interrupt(self) -> None:
        """Stop the agent's reply."""

    async def tool_response(self, response: ToolResponse) -> None:
        """A client's answer to a tool_request."""

    async def close(self, reason: str) -> None:
        """Hang up."""


async def dispatch_control(target: ControlTarget, message: ClientMessage) -> None:
    """Apply a control message to an open session; a second hello is an error."""
    if isinstance(message, Hello):
        raise ProtocolError("already_started", "hello was already accepted for this session")
    if isinstance(message, SpeakText):
        await target.push_text(message.text, message.mode)
    elif isinstance(message, Interrupt):
        await target.interrupt()
    elif isinstance(message, ToolResponse):
        await target.tool_response(message)
    elif isinstance(message, Bye):
        await target.close("bye")
