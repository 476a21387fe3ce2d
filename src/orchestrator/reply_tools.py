"""A session's tools on the controller's side, and each reply's: what the responder may call,
and the waiting.

The responder's tool loop calls `run()`; each call becomes a `ToolCalled` event for the turn
decisions, which send a `tool_request` to the client or run the orchestrator's own tool, and
hand the outcome back (`resolve`) when it comes, fails or times out. Calls wait until the reply
is committed: a speculative reply (the person may not be done) must not act on anyone's behalf.
The rounds whose results came back are kept for the history.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voicefleet.orchestrator.protocol_tools import ToolResponse
from voicefleet.orchestrator.server_tools import ServerTools, ToolFailed
from voicefleet.orchestrator.tool_calls import ToolCall, ToolOutcome, ToolRound
from voicefleet.orchestrator.tool_config import ToolsConfig
from voicefleet.orchestrator.tool_schema import client_tools
from voicefleet.orchestrator.turn_events import (
    ResolveTool,
    RunTool,
    ToolAnswered,
    ToolCalled,
    ToolProblem,
    TurnEvent,
)

log = logging.getLogger(__name__)


class ReplyTools:
    """The ToolRunner of one reply."""

    def __init__(
        self,
        reply_id: int,
        post: Callable[[TurnEvent], None],
        server: ServerTools,
        client: dict[str, dict[str, Any]],
        ids: itertools.count[int],
    ) -> None:
        self.reply_id = reply_id
        self.max_rounds = server.config.max_rounds
        self.rounds: list[ToolRound] = []  # calls whose results came back, for the history
        self._post = post
        self._server = server
        self._client = client
        self._ids = ids
        self._pending: dict[str, tuple[ToolCall, asyncio.Future[ToolOutcome]]] = {}
        self._committed: Callable[[], Awaitable[object]] | None = None

    def attach(self, committed: Callable[[], Awaitable[object]]) -> None:
        """What calls wait for first: the reply being committed."""
        self._committed = committed

    def specs(self) -> list[dict[str, Any]]:
        """The orchestrator's tools, then the client's."""
        return [*self._server.specs(), *self._client.values()]

    def names(self) -> set[str]:
        """Every tool's name."""
        return self._server.names() | set(self._client)

    def problem(self, code: str, message: str) -> None:
        """An error for the client, through the decisions."""
        self._post(ToolProblem(self.reply_id, code, message))

    async def run(self, calls: list[ToolCall]) -> list[ToolOutcome]:
        """Make the calls at once and wait for every outcome."""
        if self._committed is not None:
            await self._committed()
        loop = asyncio.get_running_loop()
        waiting: list[tuple[str, asyncio.Future[ToolOutcome]]] = []
        for call in calls:
            request_id = f"call-{next(self._ids)}"
            future: asyncio.Future[ToolOutcome] = loop.create_future()
            self._pending[request_id] = (call, future)
            waiting.append((request_id, future))
            where = (
                "server"
                if call.name in self._server.names()
                else "client"
                if call.name in self._client
                else ""
            )
            self._post(ToolCalled(self.reply_id, request_id, call.name, call.arguments, where))
        try:
            return [await future for _, future in waiting]
        finally:
            # Cancelled (the turn is over) or not: the calls whose results came are recorded.
            done = tuple(f.result() for _, f in waiting if f.done() and not f.cancelled())
            if done:
                self.rounds.append(ToolRound(done))
            for request_id, _ in waiting:
                self._pending.pop(request_id, None)

    def resolve(self, request_id: str, result: Any, error: str | None) -> None:
        """A call's outcome (ignored when nobody waits for it any more)."""
        entry = self._pending.get(request_id)
        if entry is not None and not entry[1].done():
            entry[1].set_result(ToolOutcome(entry[0], result, error))


class SessionTools:
    """A session's tools: the client's (from hello, checked here: ToolDeclarationError), the
    orchestrator's, and each live reply's calls."""

    def __init__(
        self, declared: object, config: ToolsConfig, post: Callable[[TurnEvent], None]
    ) -> None:
        self.client = client_tools(declared, config)
        self.server = ServerTools(config)
        self.runs: dict[int, ReplyTools] = {}  # by reply id
        self._post = post
        self._ids = itertools.count(1)

    def for_reply(self, reply_id: int) -> ReplyTools:
        """The tools of a new reply (attach what its calls wait for)."""
        tools = ReplyTools(reply_id, self._post, self.server, self.client, self._ids)
        self.runs[reply_id] = tools
        return tools

    def rounds(self, reply_id: int) -> tuple[ToolRound, ...]:
        """The reply's calls whose results came back."""
        tools = self.runs.get(reply_id)
        return tuple(tools.rounds) if tools is not None else ()

    def forget(self, reply_id: int) -> None:
        """The reply is gone."""
        self.runs.pop(reply_id, None)

    def resolve(self, action: ResolveTool) -> None:
        """Hand a call its outcome."""
        if tools := self.runs.get(action.reply):
            tools.resolve(action.request_id, action.result, action.error)

    def answered(self, response: ToolResponse) -> ToolAnswered:
        """A client's tool_response as an event for the decisions."""
        size = json_size(response.result)
        return ToolAnswered(
            response.request_id, response.result, response.error or None, "client", size
        )

    async def run(self, action: RunTool) -> None:
        """Answer a call with the orchestrator's tool; the outcome comes back as an event."""
        result: Any = None
        error: str | None = None
        try:
            result = await self.server.run(action.name, action.arguments)
        except ToolFailed as failure:
            error = str(failure)
        except Exception as failure:  # a tool's bug is that call's error, not the session's
            log.exception("tool %s failed", action.name)
            error = f"{action.name} failed: {type(failure).__name__}"
        self._post(ToolAnswered(action.request_id, result, error, "server", json_size(result)))

    async def close(self) -> None:
        """Close the orchestrator's tools' connections."""
        await self.server.close()


def json_size(value: Any) -> int:
    """Bytes of `value` as JSON (a result the encoder cannot take counts as too large)."""
    try:
        return len(json.dumps(value, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError, RecursionError):
        return 1 << 30
