"""`voicefleet client --tools FILE`: tools the client declares, answered with canned results.

The file maps each tool's name to its description, its parameters (a JSON schema of an object)
and the `result` to answer every call with (or an `error`):

    {"lookup_order": {"description": "Where an order is.",
                      "parameters": {"type": "object",
                                     "properties": {"order_id": {"type": "string"}}},
                      "result": {"status": "shipped", "eta": "Friday"}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicefleet.orchestrator.protocol_tools import ToolRequest

_KEYS = {"description", "parameters", "result", "error"}


class ToolsFileError(ValueError):
    """The tools file cannot be used; the message says why."""


@dataclass(frozen=True)
class CannedTools:
    """Declared tools and their canned answers."""

    tools: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> CannedTools:
        """Read and check a tools file."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ToolsFileError(f"cannot read {path}: {error.strerror}") from None
        except json.JSONDecodeError as error:
            raise ToolsFileError(f"{path} is not JSON: {error.msg} (line {error.lineno})") from None
        if not isinstance(data, dict) or not data:
            raise ToolsFileError(f"{path} must map tool names to their answers")
        for name, tool in data.items():
            if not isinstance(tool, dict) or set(tool) - _KEYS:
                keys = ", ".join(sorted(_KEYS))
                raise ToolsFileError(f"{path}: {name!r} must be an object with keys among {keys}")
        return cls(data)

    def declarations(self) -> list[dict[str, Any]]:
        """hello.tools: one OpenAI function tool per entry."""
        declared = []
        for name, tool in self.tools.items():
            function: dict[str, Any] = {"name": name}
            for key in ("description", "parameters"):
                if key in tool:
                    function[key] = tool[key]
            declared.append({"type": "function", "function": function})
        return declared

    def answer(self, request: ToolRequest) -> tuple[Any, str]:
        """(result, error) for a request: the canned ones of its tool."""
        tool = self.tools.get(request.tool_name)
        if tool is None:
            return None, f"this client has no tool {request.tool_name!r}"
        return tool.get("result"), str(tool.get("error") or "")
