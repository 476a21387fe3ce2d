"""The tool decisions on a fake clock: requests, results, deadlines, cancellation by the turn's
end, late and unknown responses, and fillers once per wait."""

from __future__ import annotations

from typing import Any

from voicefleet.orchestrator.decisions import TurnCore, TurnRules
from voicefleet.orchestrator.protocol import ErrorEvent
from voicefleet.orchestrator.protocol_tools import ToolCancelled, ToolRequest, ToolResult
from voicefleet.orchestrator.turn_events import (
    InterruptRequest,
    ReplyText,
    ResolveTool,
    RunTool,
    Send,
    SpeakFiller,
    StartReply,
    TextInput,
    Tick,
    ToolAnswered,
    ToolCalled,
    TurnAction,
    TurnEvent,
)

RULES = TurnRules(
    tool_timeout_s=10.0,
    max_tool_result_bytes=100,
    filler_after_s=1.0,
    filler_phrases=("One moment.", "Let me check."),
)


class Script:
    """A core on a fake clock, with a text turn started; the actions of the last event."""

    def __init__(self, rules: TurnRules = RULES, mode: str = "answer") -> None:
        self.now = 0.0
        self.core = TurnCore("test", rules, self.now)
        self.core.start()
        started = self.event(TextInput("Where is my order?", mode))
        self.reply = next(a for a in started if isinstance(a, StartReply)).reply

    def event(self, event: TurnEvent, at: float | None = None) -> list[TurnAction]:
        if at is not None:
            self.now = at
        return self.core.handle(event, self.now)

    def call(self, request_id: str, where: str = "client", arguments: str = "{}") -> list[Any]:
        return self.event(ToolCalled(self.reply, request_id, "lookup_order", arguments, where))


def sent(actions: list[TurnAction]) -> list[Any]:
    return [a.message for a in actions if isinstance(a, Send)]


def codes(actions: list[TurnAction]) -> list[str]:
    return [m.code for m in sent(actions) if isinstance(m, ErrorEvent)]


def test_a_client_call_is_requested_answered_and_a_second_answer_is_refused() -> None:
    script = Script()
    out = script.call("call-1", arguments='{"order_id": "42"}')
    assert sent(out) == [ToolRequest("call-1", "lookup_order", {"order_id": "42"}, 1)]
    out = script.event(ToolAnswered("call-1", {"status": "shipped"}, None, "client", 20))
    assert [a for a in out if isinstance(a, ResolveTool)] == [
        ResolveTool(script.reply, "call-1", {"status": "shipped"}, None)
    ]
    assert sent(out) == [ToolResult("call-1", "lookup_order", 1, {"status": "shipped"})]
    again = script.event(ToolAnswered("call-1", {"status": "late"}, None, "client", 17))
    assert sent(again) == [ToolCancelled("call-1", "answered")]
    assert not [a for a in again if isinstance(a, ResolveTool)]


def test_a_server_call_runs_here_and_the_client_cannot_answer_it() -> None:
    script = Script()
    out = script.call("call-1", where="server")
    assert out == [RunTool(script.reply, "call-1", "lookup_order", {})]
    meddling = script.event(ToolAnswered("call-1", "forged", None, "client", 8))
    assert codes(meddling) == ["unknown_tool_request"]
    out = script.event(ToolAnswered("call-1", {"ok": True}, None, "server", 11))
    assert ResolveTool(script.reply, "call-1", {"ok": True}, None) in out


def test_a_call_times_out_on_the_tick_after_its_deadline() -> None:
    script = Script()
    script.event(ReplyText(script.reply), at=0.1)  # no filler in this test's way
    script.call("call-1")
    assert not [a for a in script.event(Tick(), at=10.05) if isinstance(a, ResolveTool)]
    out = script.event(Tick(), at=10.1)
    why = "no result within 10 s"
    assert ResolveTool(script.reply, "call-1", None, why) in out
    assert sent(out) == [
        ToolCancelled("call-1", "timeout"),
        ToolResult("call-1", "lookup_order", 1, None, why),
        ErrorEvent("tool_timeout", f"lookup_order: {why}"),
    ]
    late = script.event(ToolAnswered("call-1", 1, None, "client", 1), at=11)
    assert sent(late) == [ToolCancelled("call-1", "timeout")]


def test_an_interrupt_cancels_waiting_calls_and_late_answers_are_told_so() -> None:
    script = Script()
    script.call("call-1")
    script.call("call-2", where="server")
    out = script.event(InterruptRequest(), at=0.5)
    assert [m for m in sent(out) if isinstance(m, ToolCancelled)] == [
        ToolCancelled("call-1", "interrupt")
    ], "the client hears of its own call only"
    assert not [a for a in out if isinstance(a, ResolveTool)], "the reply is gone with its calls"
    late = script.event(ToolAnswered("call-1", {"status": "x"}, None, "client", 14))
    assert sent(late) == [ToolCancelled("call-1", "interrupt")]
    assert sent(script.event(ToolAnswered("call-2", 1, None, "server", 1))) == []
    unknown = script.event(ToolAnswered("call-9", 1, None, "client", 1))
    assert codes(unknown) == ["unknown_tool_request"]


def test_a_result_too_large_becomes_an_error_result() -> None:
    script = Script()
    script.call("call-1")
    out = script.event(ToolAnswered("call-1", "x" * 200, None, "client", 202))
    why = "the result is 202 bytes; at most 100"
    assert ResolveTool(script.reply, "call-1", None, why) in out
    assert codes(out) == ["tool_result_too_large"]


def test_a_client_error_result_is_passed_on_and_reported() -> None:
    script = Script()
    script.call("call-1")
    out = script.event(ToolAnswered("call-1", None, "the order system is down", "client", 4))
    assert ResolveTool(script.reply, "call-1", None, "the order system is down") in out
    assert codes(out) == ["tool_failed"]


def test_unknown_tools_and_bad_arguments_fail_at_once_without_a_request() -> None:
    script = Script()
    unknown = script.call("call-1", where="")
    assert [a.error for a in unknown if isinstance(a, ResolveTool)] == [
        "there is no tool named 'lookup_order'"
    ]
    assert codes(unknown) == ["tool_failed"]
    bad = script.call("call-2", arguments='{"order_id": ')
    assert [a.error for a in bad if isinstance(a, ResolveTool)] == [
        "the arguments of lookup_order are not valid JSON"
    ]
    assert not [m for m in sent(unknown + bad) if isinstance(m, ToolRequest)]


def test_a_call_of_a_reply_that_is_not_current_is_turned_away() -> None:
    script = Script()
    old = script.reply
    script.event(TextInput("Never mind.", "answer"))
    out = script.event(ToolCalled(old, "call-1", "lookup_order", "{}", "client"))
    assert out == [ResolveTool(old, "call-1", None, "the turn is over")]


def test_a_filler_once_per_wait_for_the_first_words_and_for_a_call() -> None:
    script = Script()
    assert not [a for a in script.event(Tick(), at=0.95) if isinstance(a, SpeakFiller)]
    assert SpeakFiller(script.reply, "One moment.") in script.event(Tick(), at=1.0)
    assert not [a for a in script.event(Tick(), at=2.5) if isinstance(a, SpeakFiller)]
    script.event(ReplyText(script.reply), at=2.6)
    script.call("call-1")
    assert not [a for a in script.event(Tick(), at=3.5) if isinstance(a, SpeakFiller)]
    assert SpeakFiller(script.reply, "Let me check.") in script.event(Tick(), at=3.7)
    script.event(ToolAnswered("call-1", 1, None, "client", 1), at=4.0)
    assert not [a for a in script.event(Tick(), at=9.0) if isinstance(a, SpeakFiller)]


def test_no_filler_when_the_words_come_in_time_for_said_text_or_when_off() -> None:
    quick = Script()
    quick.event(ReplyText(quick.reply), at=0.4)
    said = Script(mode="say")
    off = Script(TurnRules(filler_after_s=0.0, filler_phrases=("One moment.",)))
    for script in (quick, said, off):
        assert not [a for a in script.event(Tick(), at=5.0) if isinstance(a, SpeakFiller)]
