"""The tool side of the turn decisions: calls, their results, their deadlines, and fillers.

A call of the current (committed) reply is sent to the client as `tool_request` or run by the
orchestrator; it ends with its result, an error, or its deadline (`tool_timeout_s`, checked on
each tick), and then the reply's model gets the outcome. A call whose reply is dropped (barge-in,
interrupt, hang-up) is closed with that reason: the client hears `tool_cancelled`, and a
`tool_response` that comes later gets `tool_cancelled` again and is ignored.

Fillers: a committed reply that waits (for its first words, or for a tool call) longer than
`filler_after_s` says one filler phrase, once per wait.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass

from voicefleet.orchestrator.protocol import ErrorEvent
from voicefleet.orchestrator.protocol_tools import ToolCancelled, ToolRequest, ToolResult
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.tool_calls import ToolCall
from voicefleet.orchestrator.tool_config import FillerConfig, ToolsConfig
from voicefleet.orchestrator.turn_events import (
    CancelReply,
    ReplyText,
    ReportTurn,
    ResolveTool,
    RunTool,
    Send,
    SpeakFiller,
    ToolAnswered,
    ToolCalled,
    ToolProblem,
    TurnAction,
)
from voicefleet.orchestrator.turn_state import CoreState, ReplyState, TurnRules

_CLOSED_KEPT = 256  # closed calls remembered, to answer late responses with tool_cancelled


@dataclass
class PendingTool:
    reply: int
    turn: int
    name: str
    where: str  # client, server
    deadline: float


class ToolDecisions(CoreState):
    """Tool calls, their deadlines, and fillers."""

    def __init__(self, session_id: str, rules: TurnRules, now: float) -> None:
        super().__init__(session_id, rules, now)
        self.tool_calls: dict[str, PendingTool] = {}
        self._closed_calls: OrderedDict[str, str] = OrderedDict()  # request id -> why
        self._fillers = 0

    def _do(self, action: TurnAction) -> None:
        super()._do(action)
        # However a reply ends, the calls it still waits on end with it.
        if isinstance(action, CancelReply):
            self._drop_calls(action.reply, _reason(action.reason))
        elif isinstance(action, ReportTurn):
            self._drop_calls(action.reply, "turn_over")

    # -- events --------------------------------------------------------------------------

    def _reply_text(self, event: ReplyText, now: float) -> None:
        for reply in (self.reply, self.speculation.reply if self.speculation else None):
            if reply is not None and reply.id == event.reply:
                reply.has_text = True
                if not self._calls_of(reply.id):
                    self._stop_waiting(reply)

    def _tool_called(self, event: ToolCalled, now: float) -> None:
        reply = self.reply
        if reply is None or reply.id != event.reply:
            self._do(ResolveTool(event.reply, event.request_id, None, "the turn is over"))
            return
        try:
            if not event.where:
                raise ValueError(f"there is no tool named {event.name!r}")
            arguments = ToolCall(event.request_id, event.name, event.arguments).parsed_arguments()
        except ValueError as error:
            self._fail_call(reply, event.request_id, event.name, str(error), "server")
            return
        if not self._calls_of(reply.id):
            self._start_waiting(reply, now)
        self.tool_calls[event.request_id] = PendingTool(
            reply.id, reply.turn, event.name, event.where, now + self.rules.tool_timeout_s
        )
        if event.where == "client":
            self._do(Send(ToolRequest(event.request_id, event.name, arguments, reply.turn)))
        else:
            self._do(RunTool(reply.id, event.request_id, event.name, arguments))

    def _tool_answered(self, event: ToolAnswered, now: float) -> None:
        call = self.tool_calls.get(event.request_id)
        if call is None or call.where != event.by:
            if event.by == "client":
                self._late_response(event.request_id)
            return
        del self.tool_calls[event.request_id]
        limit = self.rules.max_tool_result_bytes
        error, code = event.error, "tool_failed"
        if error is None and event.size > limit:
            error = f"the result is {event.size} bytes; at most {limit}"
            code = "tool_result_too_large"
        result = None if error is not None else event.result
        self._close_call(event.request_id, "answered")
        self._do(ResolveTool(call.reply, event.request_id, result, error))
        ended = ToolResult(event.request_id, call.name, call.turn, result, error or "", call.where)
        self._do(Send(ended))
        if error is not None:
            self._do(Send(ErrorEvent(code, f"{call.name}: {error}")))
        self._call_ended(call.reply)

    def _tool_problem(self, event: ToolProblem) -> None:
        if self.reply is not None and self.reply.id == event.reply:
            self._do(Send(ErrorEvent(event.code, event.message)))

    def _tool_timers(self, now: float) -> None:
        """Deadlines of pending calls; a filler for a wait that has run long."""
        if self.state is State.TERMINATED:
            return
        for request_id, call in list(self.tool_calls.items()):
            if now < call.deadline:
                continue
            del self.tool_calls[request_id]
            why = f"no result within {self.rules.tool_timeout_s:g} s"
            self._close_call(request_id, "timeout")
            self._do(ResolveTool(call.reply, request_id, None, why))
            if call.where == "client":
                self._do(Send(ToolCancelled(request_id, "timeout")))
            self._do(Send(ToolResult(request_id, call.name, call.turn, None, why, call.where)))
            self._do(Send(ErrorEvent("tool_timeout", f"{call.name}: {why}")))
            self._call_ended(call.reply)
        reply = self.reply
        rules = self.rules
        if (
            reply is not None
            and reply.waiting_since is not None
            and not reply.filler_said
            and rules.filler_after_s > 0
            and rules.filler_phrases
            and now - reply.waiting_since >= rules.filler_after_s
        ):
            reply.filler_said = True
            phrase = rules.filler_phrases[self._fillers % len(rules.filler_phrases)]
            self._fillers += 1
            self._do(SpeakFiller(reply.id, phrase))
            self._decided("filler", reply.turn, phrase)

    # -- helpers -------------------------------------------------------------------------

    def _committed(self, reply: ReplyState, now: float) -> None:
        """A reply the person will hear: it waits for its first words, if none came yet."""
        if reply.user and not reply.has_text:
            self._start_waiting(reply, now)

    def _start_waiting(self, reply: ReplyState, now: float) -> None:
        if reply.waiting_since is None:
            reply.waiting_since, reply.filler_said = now, False

    def _stop_waiting(self, reply: ReplyState) -> None:
        reply.waiting_since, reply.filler_said = None, False

    def _call_ended(self, reply_id: int) -> None:
        reply = self.reply
        if reply is not None and reply.id == reply_id and not self._calls_of(reply_id):
            self._stop_waiting(reply)

    def _calls_of(self, reply_id: int) -> list[str]:
        return [rid for rid, call in self.tool_calls.items() if call.reply == reply_id]

    def _fail_call(self, reply: ReplyState, request_id: str, name: str, why: str, by: str) -> None:
        self._close_call(request_id, "answered")
        self._do(ResolveTool(reply.id, request_id, None, why))
        self._do(Send(ToolResult(request_id, name, reply.turn, None, why, by)))
        self._do(Send(ErrorEvent("tool_failed", f"{name}: {why}")))

    def _drop_calls(self, reply_id: int, reason: str) -> None:
        for request_id in self._calls_of(reply_id):
            call = self.tool_calls.pop(request_id)
            self._close_call(request_id, reason)
            if call.where == "client":
                self._do(Send(ToolCancelled(request_id, reason)))

    def _late_response(self, request_id: str) -> None:
        reason = self._closed_calls.get(request_id)
        if reason is not None:
            self._do(Send(ToolCancelled(request_id, reason)))
        else:
            message = f"no tool_request {request_id!r} is waiting for a response"
            self._do(Send(ErrorEvent("unknown_tool_request", message)))

    def _close_call(self, request_id: str, reason: str) -> None:
        self._closed_calls[request_id] = reason
        while len(self._closed_calls) > _CLOSED_KEPT:
            self._closed_calls.popitem(last=False)


def _reason(cancel_reason: str) -> str:
    """A reply's cancel reason as a tool_cancelled reason."""
    return cancel_reason if cancel_reason in ("barge_in", "interrupt", "hangup") else "turn_over"


def with_tools(rules: TurnRules, tools: ToolsConfig, filler: FillerConfig) -> TurnRules:
    """The pipeline's rules with the tool limits and the fillers."""
    return dataclasses.replace(
        rules,
        tool_timeout_s=tools.call_timeout_s,
        max_tool_result_bytes=tools.max_result_bytes,
        filler_after_s=filler.after_s if filler.enabled else 0.0,
        filler_phrases=tuple(filler.phrases),
    )
