"""The responder: what the agent says back to an utterance, streamed as text deltas.

`echo` repeats the utterance (the offline default); `openai` streams from any OpenAI-compatible
chat-completions endpoint (OpenAI, Ollama, vLLM, llama.cpp server). Both keep the conversation
history the same way: the session records each turn with `remember()` once it is over, as the
text the person was actually sent, so a reply cut short by barge-in is remembered as cut short
and a speculative reply that was dropped is not remembered at all. Consume `reply()` inside
`contextlib.aclosing`
(or let the consuming task be cancelled while it awaits the next delta) so an interrupted
reply hangs up at once instead of when the generator is garbage-collected.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from voicefleet.orchestrator.chat_stream import EventData, error_excerpt, error_message, excerpt
from voicefleet.orchestrator.tool_calls import ToolCall, ToolCallAssembler, ToolOutcome, ToolRound
from voicefleet.orchestrator.tool_config import FillerConfig, ToolsConfig

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are spoken aloud, so answer briefly, "
    "in one to three plain spoken sentences, with no markdown, lists, code or emoji."
)
_ERROR_BODY_LIMIT = 4096


class OpenAIConfig(BaseModel):
    """An OpenAI-compatible chat-completions endpoint and how to prompt it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="env var holding the API key; unset: no Authorization"
    )
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history_turns: int = Field(8, ge=0, description="user/assistant pairs sent as context")
    temperature: float | None = Field(None, ge=0, le=2, description="null: the server default")
    timeout_s: float = Field(30.0, gt=0, description="longest wait for the next bytes")
    connect_timeout_s: float = Field(5.0, gt=0)


class ResponderConfig(BaseModel):
    """Which responder the orchestrator uses."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["echo", "openai"] = "echo"
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    filler: FillerConfig = Field(default_factory=FillerConfig)


class ResponderError(Exception):
    """A reply that could not be produced; the message is readable as is."""


class ResponderUnavailable(ResponderError):
    """The endpoint could not be reached or did not answer in time."""


class ResponderHTTPError(ResponderError):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ResponderProtocolError(ResponderError):
    """The endpoint's stream was not the server-sent events we expect."""


@dataclass(frozen=True)
class Turn:
    """One exchange: what the user said, the tool calls whose results came back, and what the
    agent actually got to say."""

    user: str
    assistant: str
    rounds: tuple[ToolRound, ...] = ()


class ToolRunner(Protocol):
    """The tools of one reply: what the model is offered, and who answers a call."""

    max_rounds: int

    def specs(self) -> list[dict[str, Any]]:
        """Every tool the model may call, as the chat request declares them."""

    def names(self) -> set[str]:
        """The tools' names."""

    async def run(self, calls: list[ToolCall]) -> list[ToolOutcome]:
        """Answer calls made at once (in parallel); one outcome per call, in order."""

    def problem(self, code: str, message: str) -> None:
        """Report a failure of the tool loop (an `error` event for the client)."""


class Responder(ABC):
    """Base of every responder: streams replies and keeps the last `history_turns` turns."""

    name: ClassVar[str]

    def __init__(self, history_turns: int = 8) -> None:
        self._history: deque[Turn] = deque(maxlen=history_turns)
        self.tools = ToolsConfig()  # the operator's tools and the limits on every call
        self.filler = FillerConfig()

    @property
    def history(self) -> tuple[Turn, ...]:
        """The remembered turns, oldest first."""
        return tuple(self._history)

    def reset(self) -> None:
        """Forget the conversation."""
        self._history.clear()

    async def reply(self, utterance: str, tools: ToolRunner | None = None) -> AsyncIterator[str]:
        """Yield the reply's text deltas, calling `tools` when the model asks (history is not
        touched: see `remember`)."""
        if not utterance.strip():
            return
        async with aclosing(self._generate(utterance, self.history, tools)) as deltas:
            async for delta in deltas:
                yield delta

    def remember(self, user: str, assistant: str, rounds: tuple[ToolRound, ...] = ()) -> None:
        """Record a turn as it happened: what the person said, the tool calls whose results came
        back, and what of the reply they were actually sent (cut at a barge-in; empty if they
        heard nothing)."""
        if user.strip():
            self._history.append(Turn(user, assistant, rounds))

    async def close(self) -> None:
        """Release connections (override if you hold any)."""
        return None

    @abstractmethod
    def _generate(
        self, utterance: str, history: tuple[Turn, ...], tools: ToolRunner | None
    ) -> AsyncGenerator[str, None]:
        """Yield the reply to `utterance` after `history`, as non-empty deltas."""


class EchoResponder(Responder):
    """Says the utterance back in one piece: makes the voice loop testable offline. A question
    that names a tool (see `named_tool`) calls it instead and says its result: the tool path
    end to end without an LLM."""

    name = "echo"

    async def _generate(
        self, utterance: str, history: tuple[Turn, ...], tools: ToolRunner | None
    ) -> AsyncGenerator[str, None]:
        name = named_tool(utterance, tools.names()) if tools is not None else None
        if tools is None or name is None:
            yield utterance
            return
        [outcome] = await tools.run([ToolCall("call_1", name, "{}")])
        yield spoken_outcome(outcome)


class OpenAIResponder(Responder):
    """Streams replies from an OpenAI-compatible `/chat/completions` endpoint."""

    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        super().__init__(config.history_turns)
        self.config = config
        self.url = f"{config.base_url.rstrip('/')}/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session; a later reply opens a new one."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession binds to the running loop.
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=None,  # a long reply is fine as long as it keeps coming
                connect=self.config.connect_timeout_s,
                sock_read=self.config.timeout_s,
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    def _request(self, utterance: str, history: tuple[Turn, ...]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.config.system_prompt}]
        for turn in history:
            messages.append({"role": "user", "content": turn.user})
            for done in turn.rounds:
                messages += done.messages()
            # A reply interrupted before its first word has nothing the user heard.
            if turn.assistant:
                messages.append({"role": "assistant", "content": turn.assistant})
        messages.append({"role": "user", "content": utterance})
        body: dict[str, Any] = {"model": self.config.model, "messages": messages, "stream": True}
        if self.config.temperature is not None:
            body["temperature"] = self.config.temperature
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _generate(
        self, utterance: str, history: tuple[Turn, ...], tools: ToolRunner | None
    ) -> AsyncGenerator[str, None]:
        body = self._request(utterance, history)
        specs = tools.specs() if tools is not None else []
        if specs:
            body["tools"] = specs
        rounds = 0
        while True:
            calls = ToolCallAssembler()
            said: list[str] = []
            async with aclosing(self._stream(body, calls)) as deltas:
                async for delta in deltas:
                    said.append(delta)
                    yield delta
            if tools is None or calls.empty:
                return
            if rounds >= tools.max_rounds:
                # Even told not to (tool_choice none), the model wants more: end the turn.
                tools.problem(
                    "tool_rounds_exceeded",
                    f"the model asked for tools after {tools.max_rounds} rounds in one turn",
                )
                yield " Sorry, I could not finish that."
                return
            rounds += 1
            outcomes = await tools.run(calls.calls())
            body["messages"] += ToolRound(tuple(outcomes)).messages("".join(said))
            if rounds >= tools.max_rounds:
                body["tool_choice"] = "none"  # the last round: answer with what there is

    async def _stream(
        self, body: dict[str, Any], calls: ToolCallAssembler
    ) -> AsyncGenerator[str, None]:
        """One chat request: its text deltas; its tool calls go to `calls`."""
        try:
            async with self._client().post(
                self.url, json=body, headers=self._headers()
            ) as response:
                try:
                    if response.status >= 400:
                        raise await self._http_error(response)
                    events = EventData()
                    async for raw in response.content:
                        data = events.feed(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                        if data == "[DONE]":
                            return
                        if data is not None and (delta := self._delta(data, calls)):
                            yield delta
                    # Some servers end the stream without [DONE]; what came is the reply.
                    data = events.flush()
                    last = self._delta(data, calls) if data not in (None, "[DONE]") else None
                    if last:
                        yield last
                except BaseException:
                    # Hang up now rather than drain: an interrupted reply must stop the
                    # server generating (and billing), and an errored one is not reusable.
                    response.close()
                    raise
        except TimeoutError as exc:
            raise ResponderUnavailable(
                f"timed out waiting for {self.url} (connect {self.config.connect_timeout_s:g} s, "
                f"read {self.config.timeout_s:g} s)"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error)
            raise ResponderUnavailable(f"cannot connect to {self.url}: {reason}") from exc
        except aiohttp.ClientError as exc:
            raise ResponderUnavailable(f"request to {self.url} failed: {exc}") from exc

    async def _http_error(self, response: aiohttp.ClientResponse) -> ResponderHTTPError:
        raw = b""
        while len(raw) < _ERROR_BODY_LIMIT:
            chunk = await response.content.read(_ERROR_BODY_LIMIT - len(raw))
            if not chunk:
                break
            raw += chunk
        excerpt = error_excerpt(raw.decode("utf-8", errors="replace")) or response.reason or ""
        return ResponderHTTPError(
            f"{self.url} answered HTTP {response.status}: {excerpt}", response.status
        )

    def _delta(self, data: str, calls: ToolCallAssembler) -> str | None:
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise ResponderProtocolError(
                f"malformed event from {self.url}: {excerpt(data)!r}"
            ) from None
        if not isinstance(event, dict):
            raise ResponderProtocolError(f"malformed event from {self.url}: {excerpt(data)!r}")
        if "error" in event:
            # OpenAI reports failures after the 200 status as an event in the stream.
            message = error_message(event) or excerpt(data)
            raise ResponderError(f"{self.url} reported an error mid-stream: {message}")
        choices = event.get("choices")
        # Role-only, finish and usage-only chunks carry no text.
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        delta = choices[0].get("delta")
        if isinstance(delta, dict):
            calls.feed(delta.get("tool_calls"))
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) and content else None


def create_responder(config: ResponderConfig) -> Responder:
    """Build the responder the config names."""
    responder: Responder = (
        OpenAIResponder(config.openai) if config.kind == "openai" else EchoResponder()
    )
    responder.tools, responder.filler = config.tools, config.filler
    return responder


_MAX_QUESTION_WORDS = 6
_VERBS = frozenset({"get", "lookup", "look", "find", "check", "fetch", "read", "show", "search"})


def named_tool(utterance: str, names: set[str]) -> str | None:
    """The tool a question names, for the echo responder: a short question (ending in "?", at
    most six words) holding every word of the tool's name but a leading verb ("What time is
    it?" names get_time, "Where is my order?" names lookup_order)."""
    text = utterance.strip()
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    if not text.endswith("?") or len(words) > _MAX_QUESTION_WORDS:
        return None  # a longer question is echoed, as any other utterance
    said = set(words)
    for name in sorted(names):
        words = [w for w in name.lower().replace("-", "_").split("_") if w]
        if len(words) > 1 and words[0] in _VERBS:
            words = words[1:]
        if words and set(words) <= said:
            return name
    return None


def spoken_outcome(outcome: ToolOutcome) -> str:
    """A tool's result as the echo responder says it: its `text`, or its fields."""
    label = outcome.call.name.replace("_", " ")
    result = outcome.result
    if outcome.error is not None:
        return f"The {label} tool failed: {outcome.error}."
    if isinstance(result, dict) and isinstance(result.get("text"), str):
        return str(result["text"])
    if isinstance(result, dict):
        fields = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items())
        return f"{label}: {fields}."
    return f"{label}: {result if isinstance(result, str) else json.dumps(result)}."
