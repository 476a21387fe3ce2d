"""The settings of tools and fillers (`responder.tools`, `responder.filler` in the config).

Tools the orchestrator answers itself: built-in ones (`get_time`) and HTTP ones the operator
names (the arguments POSTed as JSON to a URL; its JSON answer is the result). Limits apply to
every call, whoever answers it: the rounds of calls per turn, the wait for one call, the size of
a result, and the size of what a client may declare in `hello.tools`.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BUILTIN_TOOLS = ("get_time",)
_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


class HttpToolConfig(BaseModel):
    """A tool backed by an HTTP endpoint: POST the arguments as JSON, the JSON answer is the
    result. Redirects are followed only to the same scheme, host and port."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(_EMPTY_OBJECT))
    url: str
    headers: dict[str, str] = Field(default_factory=dict, description="sent with each call")
    timeout_s: float | None = Field(None, gt=0, description="null: tools.call_timeout_s")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOOL_NAME.match(value):
            raise ValueError("a tool name is 1-64 letters, digits, _ or -")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an http(s) URL, not {value!r}")
        return value

    def spec(self) -> dict[str, Any]:
        """The tool as the chat request declares it."""
        function = {"name": self.name, "description": self.description}
        return {"type": "function", "function": {**function, "parameters": self.parameters}}


class ToolsConfig(BaseModel):
    """Which tools the orchestrator answers, and the limits on every tool call."""

    model_config = ConfigDict(extra="forbid")

    builtin: list[Literal["get_time"]] = Field(
        default=["get_time"], description="tools answered by the orchestrator"
    )
    http: list[HttpToolConfig] = Field(default_factory=list)
    max_rounds: int = Field(4, ge=1, description="rounds of tool calls in one turn")
    call_timeout_s: float = Field(10.0, gt=0, description="longest wait for one call's result")
    max_result_bytes: int = Field(16_384, ge=64, description="a result's JSON, at most")
    max_client_tools: int = Field(32, ge=0, description="tools in hello.tools, at most")
    max_client_tools_bytes: int = Field(32_768, ge=256, description="hello.tools as JSON, at most")

    @model_validator(mode="after")
    def _unique(self) -> ToolsConfig:
        names = [*self.builtin, *(tool.name for tool in self.http)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"tool names must be unique: {', '.join(twice)}")
        return self

    def names(self) -> set[str]:
        """The tools the orchestrator answers."""
        return {*self.builtin, *(tool.name for tool in self.http)}


class FillerConfig(BaseModel):
    """A short phrase spoken while the agent waits (the first token, a tool call)."""

    model_config = ConfigDict(extra="forbid")

    after_s: float = Field(1.0, ge=0, description="a wait this long gets a filler; 0: never")
    phrases: list[str] = Field(
        default_factory=lambda: ["One moment.", "Let me check."],
        description="used in turn, one per wait",
    )

    @field_validator("phrases")
    @classmethod
    def _phrases(cls, value: list[str]) -> list[str]:
        phrases = [" ".join(phrase.split()) for phrase in value]
        if any(not phrase for phrase in phrases):
            raise ValueError("a filler phrase must not be empty")
        return phrases

    @property
    def enabled(self) -> bool:
        """Whether fillers are spoken at all."""
        return self.after_s > 0 and bool(self.phrases)
