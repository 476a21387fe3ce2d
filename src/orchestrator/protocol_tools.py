"""The tool-calling messages of the WebSocket protocol, and a transcript's timed words.

The server asks the client to run one of the tools it declared in `hello.tools`
(`tool_request`), the client answers (`tool_response`) and the reply goes on; every call, the
client's or the orchestrator's own, ends with one `tool_result`. A call whose turn ended first
(barge-in, interrupt, a timeout) is `tool_cancelled`: the client may stop working on it, and a
`tool_response` for it that comes later gets `tool_cancelled` again and is ignored.
protocol.py registers these with the codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

# -- client -> server --------------------------------------------------------------------


@dataclass(frozen=True)
class ToolResponse:
    """The client's answer to a `tool_request`: a JSON result, or `error` (why there is none)."""

    type: ClassVar[str] = "tool_response"
    request_id: str
    result: Any = None
    error: str = ""


# -- server -> client --------------------------------------------------------------------


@dataclass(frozen=True)
class ToolRequest:
    """Run a tool the client declared and answer with `tool_response`."""

    type: ClassVar[str] = "tool_request"
    request_id: str
    tool_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    turn: int = 0


@dataclass(frozen=True)
class ToolResult:
    """A tool call ended: its result, or `error` (then the model is told why)."""

    type: ClassVar[str] = "tool_result"
    request_id: str
    tool_name: str
    turn: int
    result: Any = None
    error: str = ""
    by: str = "client"  # who answered: client, server


@dataclass(frozen=True)
class ToolCancelled:
    """The call's turn is over (barge_in, interrupt, hangup) or it timed out (timeout), or it
    was answered already (answered): any response to it is ignored."""

    type: ClassVar[str] = "tool_cancelled"
    request_id: str
    reason: str


@dataclass(frozen=True)
class TranscriptWord:
    """One word of a final transcript: seconds from the start of the utterance, and how sure
    the recognizer was (0-1)."""

    word: str
    start: float
    end: float
    confidence: float
