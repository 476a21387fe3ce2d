"""Human-readable lines for the server's events, printed as they arrive."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from voicefleet.audio.format import FRAME_MS
from voicefleet.orchestrator.protocol import (
    AgentText,
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioResume,
    AudioStart,
    ErrorEvent,
    Ready,
    ServerMessage,
    StateChanged,
    TranscriptEvent,
    TurnMetrics,
)
from voicefleet.orchestrator.protocol_tools import ToolCancelled, ToolRequest, ToolResult

_METRIC_NAMES = (
    ("endpoint_ms", "endpoint"),
    ("asr_ms", "asr"),
    ("first_frame_ms", "first frame"),
    ("ttfa_ms", "ttfa"),
    ("barge_in_ms", "barge-in"),
)


def format_metrics(metrics: TurnMetrics) -> str:
    """`[metrics] turn 1: asr 312 ms, first frame 95 ms, ttfa 410 ms` (unmeasured ones left out)."""
    parts = [
        f"{label} {value:.0f} ms"
        for name, label in _METRIC_NAMES
        if (value := getattr(metrics, name)) is not None
    ]
    return f"[metrics] turn {metrics.turn}: {', '.join(parts) or 'nothing measured'}"


def describe(message: ServerMessage, quiet: bool = False) -> str | None:
    """The line for one event on stdout, or None when it is not shown (`quiet` shows less)."""
    if isinstance(message, TranscriptEvent):
        if message.final:
            return f"[you] {message.text}"
        return None if quiet else f"[you…] {message.text}"
    if isinstance(message, AgentText):
        label = "[agent…]" if message.filler else "[agent]"
        return f"{label} {message.text}" if message.text else None
    if isinstance(message, ToolRequest):
        return f"[tool] {message.tool_name}({_json(message.parameters)}): asked of this client"
    if isinstance(message, ToolResult):
        said = f"error: {message.error}" if message.error else _json(message.result)
        return f"[tool] {message.tool_name} ({message.by}) -> {said}"
    if isinstance(message, ToolCancelled):
        return f"[tool] {message.request_id} cancelled ({message.reason})"
    if isinstance(message, TurnMetrics):
        return format_metrics(message)
    if isinstance(message, AudioCancel):
        return f"[audio] turn {message.turn}: cancelled ({message.reason})"
    if quiet:
        return None
    if isinstance(message, Ready):
        echo = "on" if message.echo_cancellation else "off"
        return f"[ready] session {message.session_id}; server echo cancellation {echo}"
    if isinstance(message, StateChanged):
        reason = f" ({message.reason})" if message.reason else ""
        return f"[state] {message.previous} -> {message.state}{reason}"
    if isinstance(message, AudioStart):
        return f"[audio] turn {message.turn}: start"
    if isinstance(message, AudioEnd):
        seconds = message.frames * FRAME_MS / 1000
        return f"[audio] turn {message.turn}: end, {message.frames} frames ({seconds:.2f} s)"
    if isinstance(message, AudioPause):
        return f"[audio] turn {message.turn}: paused"
    if isinstance(message, AudioResume):
        return f"[audio] turn {message.turn}: resumed"
    return None


def _json(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


class EventPrinter:
    """Prints events to stdout and errors and protocol problems to stderr."""

    def __init__(
        self, quiet: bool = False, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.quiet = quiet
        self._out = out
        self._err = err

    def event(self, message: ServerMessage) -> None:
        """Print one server message."""
        if isinstance(message, ErrorEvent):
            fatal = " (fatal)" if message.fatal else ""
            self.error(f"[error] {message.code}: {message.message}{fatal}")
            return
        line = describe(message, self.quiet)
        if line is not None:
            self.line(line)

    def problem(self, description: str) -> None:
        """Print a protocol problem on the server's side."""
        self.error(f"[protocol] {description}")

    def line(self, text: str) -> None:
        """Print one line on stdout."""
        # Looked up at print time so redirected or captured streams are honoured.
        print(text, file=self._out or sys.stdout, flush=True)

    def error(self, text: str) -> None:
        """Print one line on stderr."""
        print(text, file=self._err or sys.stderr, flush=True)
