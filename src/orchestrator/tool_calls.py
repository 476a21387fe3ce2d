"""Tool calls as an LLM streams them, and as the conversation records them.

An OpenAI-compatible endpoint streams a call in pieces: the first delta of each call carries its
`index`, `id` and `function.name`, later ones only more of `function.arguments` (a JSON text
split anywhere, even inside a string). Several calls (parallel calls) interleave by `index`.
`ToolCallAssembler` joins the pieces; `ToolRound` is one round of calls and their results, as
the chat messages that put it in the history (the assistant's `tool_calls` message, then one
`tool` message per result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for: its id, the tool's name, the arguments as JSON text."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as an object ("" counts as {}); ValueError when they are not one."""
        if not self.arguments.strip():
            return {}
        try:
            value = json.loads(self.arguments)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError(f"the arguments of {self.name} are not valid JSON") from None
        if not isinstance(value, dict):
            raise ValueError(f"the arguments of {self.name} are not a JSON object")
        return value

    def message(self) -> dict[str, Any]:
        """The call as it appears in an assistant message's `tool_calls`."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments or "{}"},
        }


@dataclass(frozen=True)
class ToolOutcome:
    """What a call came back with: a JSON-able result, or why there is none."""

    call: ToolCall
    result: Any = None
    error: str | None = None

    def content(self) -> str:
        """The `tool` message's content: the result as JSON, or {"error": why}."""
        value = {"error": self.error} if self.error is not None else self.result
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class ToolRound:
    """Calls the model made at once and the results that came back for them."""

    outcomes: tuple[ToolOutcome, ...]

    def messages(self, content: str | None = None) -> list[dict[str, Any]]:
        """The assistant's tool_calls message (with what it said first, if anything), then one
        tool message per result."""
        calls = [outcome.call.message() for outcome in self.outcomes]
        messages: list[dict[str, Any]] = [
            {"role": "assistant", "content": content or None, "tool_calls": calls}
        ]
        for outcome in self.outcomes:
            messages.append(
                {"role": "tool", "tool_call_id": outcome.call.id, "content": outcome.content()}
            )
        return messages


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Joins streamed `tool_calls` deltas into whole calls."""

    def __init__(self) -> None:
        self._calls: dict[int, _Partial] = {}

    def feed(self, deltas: object) -> None:
        """Take one chunk's `choices[0].delta.tool_calls` (anything else is ignored)."""
        if not isinstance(deltas, list):
            return
        for position, delta in enumerate(deltas):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            # Some servers send each call whole and leave out the index: its place is its key.
            key = index if isinstance(index, int) and not isinstance(index, bool) else position
            partial = self._calls.setdefault(key, _Partial())
            if isinstance(delta.get("id"), str) and delta["id"]:
                partial.id = delta["id"]
            function = delta.get("function")
            if not isinstance(function, dict):
                continue
            if isinstance(function.get("name"), str):
                partial.name += function["name"]
            if isinstance(function.get("arguments"), str):
                partial.arguments.append(function["arguments"])
            elif isinstance(function.get("arguments"), dict):  # whole, as an object (Ollama)
                partial.arguments.append(json.dumps(function["arguments"]))

    @property
    def empty(self) -> bool:
        """No call has begun."""
        return not self._calls

    def calls(self) -> list[ToolCall]:
        """The calls so far, by index; a call without an id gets `call_<index>`."""
        return [
            ToolCall(partial.id or f"call_{key}", partial.name, "".join(partial.arguments))
            for key, partial in sorted(self._calls.items())
            if partial.name
        ]
