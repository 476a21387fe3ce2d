"""Reading a chat-completions stream: server-sent events, and the errors an endpoint reports.

OpenAI-compatible servers send `data:` events ending with `[DONE]`, and report failures as
`{"error": {"message": ...}}` (OpenAI), `{"error": "..."}` (Ollama) or `{"detail": ...}` (vLLM,
FastAPI), before or after the 200 status.
"""

from __future__ import annotations

import json
from typing import Any

_EXCERPT_CHARS = 200


class EventData:
    """Joins the `data:` lines of server-sent events; an event ends at a blank line."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def feed(self, line: str) -> str | None:
        """Take one line (without its ending); return an event's data when one completes."""
        if not line:
            return self.flush()
        field, _, value = line.partition(":")
        # Comments (":...") and other fields (event:, id:, retry:) carry nothing we use.
        if field == "data":
            self._lines.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """Return the pending event's data, if any."""
        if not self._lines:
            return None
        data = "\n".join(self._lines)
        self._lines.clear()
        return data


def excerpt(text: str) -> str:
    """`text` on one line, at most 200 characters."""
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else f"{text[: _EXCERPT_CHARS - 3]}..."


def error_message(payload: dict[str, Any]) -> str | None:
    """The message of an error payload, in any of the shapes servers use."""
    # OpenAI: {"error": {"message": ...}}; Ollama: {"error": "..."}; vLLM/FastAPI: {"detail": ...}
    error = payload.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return excerpt(error["message"])
    for value in (error, payload.get("message"), payload.get("detail")):
        if isinstance(value, str):
            return excerpt(value)
    return None


def error_excerpt(body: str) -> str:
    """The readable part of an error body."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return excerpt(body)
    message = error_message(payload) if isinstance(payload, dict) else None
    return message or excerpt(body)
