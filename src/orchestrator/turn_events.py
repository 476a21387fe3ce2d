"""What the turn controller hears (events) and what its decisions ask for (actions).

Events come from the audio path (per-frame voicing and the segmenter's speech events), the ASR
jobs, the replies (audible, ended), the transport (text, interrupt, hang-up) and a timer. The
decision core (decisions.py) turns each into a list of actions; the controller
(controller.py) carries them out. Both sides are plain frozen dataclasses, so a test can script
events and read actions without sockets, models or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voicefleet.orchestrator.protocol import ServerMessage
from voicefleet.orchestrator.protocol_tools import TranscriptWord
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.vad import VadEvent

Pcm16 = npt.NDArray[np.int16]

# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voicing:
    """One 20 ms microphone frame: voiced or not; `at` is its end in stream seconds."""

    at: float
    voiced: bool


@dataclass(frozen=True)
class Heard:
    """A speech event from the segmenter (start, pause, resume, end)."""

    event: VadEvent


@dataclass(frozen=True)
class Transcribed:
    """An ASR job finished: its text, or why it failed."""

    job: int
    text: str
    error: str | None = None
    queued_ms: float = 0.0  # how long it waited for the recognizer
    words: tuple[TranscriptWord, ...] | None = None  # with word timings (hello.transcript_words)
    confidence: float | None = None


@dataclass(frozen=True)
class ReplyAudible:
    """A reply's first frame went to the person."""

    reply: int


@dataclass(frozen=True)
class ReplyEnded:
    """A reply has sent its last frame (completed), or ended without it (empty, failed)."""

    reply: int
    completed: bool


@dataclass(frozen=True)
class TextInput:
    """The person typed: `answer` runs it through the responder, `say` speaks it as is."""

    text: str
    mode: str


@dataclass(frozen=True)
class InterruptRequest:
    """The client asked the agent to stop talking."""


@dataclass(frozen=True)
class Hangup:
    """The session ends: bye, disconnect, shutdown."""

    reason: str


@dataclass(frozen=True)
class Tick:
    """Time passes (limits are checked on it)."""


@dataclass(frozen=True)
class ReplyText:
    """A reply's first words from the responder (its wait for the first token is over)."""

    reply: int


@dataclass(frozen=True)
class ToolCalled:
    """A reply's model called a tool; `where` answers it: client, server, or "" (no such
    tool). `arguments` is the model's JSON text."""

    reply: int
    request_id: str
    name: str
    arguments: str
    where: str


@dataclass(frozen=True)
class ToolAnswered:
    """A call's result came back `by` the client (tool_response) or the server; `size` is the
    result's JSON length in bytes."""

    request_id: str
    result: Any
    error: str | None
    by: str
    size: int = 0


@dataclass(frozen=True)
class ToolProblem:
    """The reply's tool loop failed in a way the client should hear of (an error code)."""

    reply: int
    code: str
    message: str


TurnEvent = (
    Voicing
    | Heard
    | Transcribed
    | ReplyAudible
    | ReplyEnded
    | TextInput
    | InterruptRequest
    | Hangup
    | Tick
    | ReplyText
    | ToolCalled
    | ToolAnswered
    | ToolProblem
)
URGENT_EVENTS = (Voicing, Heard, TextInput, InterruptRequest, Hangup)
"""Handled before anything already queued: what the person does goes first."""

# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcribe:
    """Run ASR on an utterance; its result comes back as Transcribed(job)."""

    job: int
    audio: Pcm16


@dataclass(frozen=True)
class CancelTranscription:
    """Nobody needs that job's text any more (a dropped speculation): out of the ASR queue."""

    job: int


@dataclass(frozen=True)
class StartReply:
    """Start preparing a reply (responder + TTS). Held (inaudible) until committed."""

    reply: int
    turn: int
    text: str
    mode: str
    committed: bool
    speech_end_at: float | None = None  # for time-to-first-audio, in the core's clock


@dataclass(frozen=True)
class CommitReply:
    """A held reply may be heard."""

    reply: int
    turn: int
    speech_end_at: float | None = None


@dataclass(frozen=True)
class HoldReply:
    """Stop the reply's frames at once: the client's playback and the worker."""

    reply: int


@dataclass(frozen=True)
class ReleaseReply:
    """Continue a held reply exactly where it stopped."""

    reply: int


@dataclass(frozen=True)
class CancelReply:
    """Drop a reply for good; never waits on the worker."""

    reply: int
    reason: str


@dataclass(frozen=True)
class Remember:
    """Write the turn to the responder's history: the user's words and what of the reply was
    actually sent to the person (the controller reads that from the reply)."""

    user: str
    reply: int


@dataclass(frozen=True)
class ReportTurn:
    """The reply is over: send its errors and its latency metrics."""

    reply: int


@dataclass(frozen=True)
class Send:
    """An event to the client."""

    message: ServerMessage


@dataclass(frozen=True)
class Moved:
    """The session changed state."""

    previous: State
    state: State
    reason: str


@dataclass(frozen=True)
class ResetListening:
    """Forget any speech in progress (the person typed instead)."""


@dataclass(frozen=True)
class Measured:
    """A latency of this turn (milliseconds), e.g. barge_in_ms."""

    name: str
    value_ms: float


@dataclass(frozen=True)
class Decided:
    """A decision worth a log line and a counter."""

    decision: str
    turn: int
    detail: str = ""


@dataclass(frozen=True)
class Close:
    """End the session; `message` set: tell the client why with a fatal error."""

    reason: str
    message: str | None = None


@dataclass(frozen=True)
class SetHangover:
    """End the pause that began at `pause_at` (stream seconds) after `ms` of silence."""

    ms: int
    pause_at: float


@dataclass(frozen=True)
class RunTool:
    """Answer a call with one of the orchestrator's tools; its result comes back as
    ToolAnswered(by="server")."""

    reply: int
    request_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ResolveTool:
    """Give the reply's waiting tool call its outcome: a result, or an error."""

    reply: int
    request_id: str
    result: Any
    error: str | None


@dataclass(frozen=True)
class SpeakFiller:
    """Say a filler phrase in the reply now (it waits); it is not the model's words."""

    reply: int
    text: str


@dataclass(frozen=True)
class TurnEnded:
    """How the end of this turn was decided: `policy/verdict` (e.g. semantic/complete)."""

    how: str


TurnAction = (
    Transcribe
    | CancelTranscription
    | SetHangover
    | TurnEnded
    | StartReply
    | CommitReply
    | HoldReply
    | ReleaseReply
    | CancelReply
    | Remember
    | ReportTurn
    | Send
    | Moved
    | ResetListening
    | Measured
    | Decided
    | Close
    | RunTool
    | ResolveTool
    | SpeakFiller
)
