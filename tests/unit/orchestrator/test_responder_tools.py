"""The responders' tool loops against a local SSE server and a fake tool runner: rounds, the
round limit, history with tool calls; the echo responder's tool; fillers kept out of history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.local_http import serve
from voicefleet.orchestrator.narration import Narration
from voicefleet.orchestrator.responder import (
    EchoResponder,
    OpenAIConfig,
    OpenAIResponder,
    named_tool,
)
from voicefleet.orchestrator.tool_calls import ToolCall, ToolOutcome, ToolRound

CALL = {"index": 0, "id": "c1", "function": {"name": "lookup", "arguments": '{"id": 1}'}}


class Runner:
    """A ToolRunner that answers every call at once and records what it was asked."""

    def __init__(self, max_rounds: int = 4) -> None:
        self.max_rounds = max_rounds
        self.calls: list[list[ToolCall]] = []
        self.problems: list[str] = []

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]

    def names(self) -> set[str]:
        return {"lookup", "get_time"}

    async def run(self, calls: list[ToolCall]) -> list[ToolOutcome]:
        self.calls.append(calls)
        return [ToolOutcome(call, {"found": call.name}) for call in calls]

    def problem(self, code: str, message: str) -> None:
        self.problems.append(code)


@pytest.fixture
async def chat() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[list[dict[str, Any]]]]]:
    """(base url, request bodies, scripted responses: a list of deltas each)."""
    bodies: list[dict[str, Any]] = []
    scripts: list[list[dict[str, Any]]] = []

    async def complete(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.json())
        deltas = scripts.pop(0) if scripts else [{"content": "Done."}]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for delta in deltas:
            chunk = {"choices": [{"index": 0, "delta": delta}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    runner, port = await serve(app)
    try:
        yield f"http://127.0.0.1:{port}/v1", bodies, scripts
    finally:
        await runner.cleanup()


async def said(responder: Any, utterance: str, runner: Any) -> str:
    return "".join([delta async for delta in responder.reply(utterance, runner)])


async def test_rounds_go_on_until_an_answer_and_the_last_round_forbids_tools(chat: Any) -> None:
    url, bodies, scripts = chat
    scripts += [[{"content": "Checking. "}, {"tool_calls": [CALL]}], [{"tool_calls": [CALL]}]]
    responder = OpenAIResponder(OpenAIConfig(base_url=url))
    runner = Runner(max_rounds=2)
    try:
        assert await said(responder, "Find it.", runner) == "Checking. Done."
    finally:
        await responder.close()
    assert len(runner.calls) == 2 and runner.problems == []
    assert [b.get("tool_choice") for b in bodies] == [None, None, "none"]
    assert all(b["tools"] == runner.specs() for b in bodies)
    second = bodies[1]["messages"]
    assert second[-2]["content"] == "Checking. " and second[-2]["tool_calls"][0]["id"] == "c1"
    assert second[-1] == {"role": "tool", "tool_call_id": "c1", "content": '{"found":"lookup"}'}


async def test_a_model_that_calls_past_the_limit_is_reported_and_still_answers(
    chat: Any,
) -> None:
    url, bodies, scripts = chat
    scripts += [[{"tool_calls": [CALL]}]] * 2
    responder = OpenAIResponder(OpenAIConfig(base_url=url))
    runner = Runner(max_rounds=1)
    try:
        reply = await said(responder, "Find it.", runner)
    finally:
        await responder.close()
    assert runner.problems == ["tool_rounds_exceeded"]
    assert "could not finish" in reply and len(bodies) == 2


async def test_history_holds_the_answered_calls_between_the_turns_words(chat: Any) -> None:
    url, bodies, _scripts = chat
    responder = OpenAIResponder(OpenAIConfig(base_url=url))
    answered = ToolRound((ToolOutcome(ToolCall("c1", "lookup", "{}"), {"found": 1}),))
    responder.remember("Find it.", "It is found.", (answered,))
    try:
        await said(responder, "Thanks.", None)
    finally:
        await responder.close()
    roles = [(m["role"], m.get("tool_call_id")) for m in bodies[0]["messages"]]
    assert roles == [
        ("system", None),
        ("user", None),
        ("assistant", None),
        ("tool", "c1"),
        ("assistant", None),
        ("user", None),
    ]
    assert "tools" not in bodies[0], "no runner: no tools offered"


@pytest.mark.parametrize(
    ("utterance", "tool"),
    [
        ("What time is it?", "get_time"),
        ("Can you look up my order?", "lookup_order"),
        ("What time is it", None),  # not a question
        ("Where is my parcel?", None),
        ("What time does the museum open tomorrow?", None),  # long: echoed
    ],
)
def test_the_echo_responder_calls_a_tool_a_question_names(utterance: str, tool: str | None) -> None:
    assert named_tool(utterance, {"get_time", "lookup_order"}) == tool


async def test_the_echo_responder_says_the_tools_text() -> None:
    class TimeRunner(Runner):
        async def run(self, calls: list[ToolCall]) -> list[ToolOutcome]:
            self.calls.append(calls)
            return [ToolOutcome(calls[0], {"text": "It is noon.", "iso": "12:00"})]

    runner = TimeRunner()
    assert await said(EchoResponder(), "What time is it?", runner) == "It is noon."
    assert [c.name for c in runner.calls[0]] == ["get_time"]
    assert await said(EchoResponder(), "Hello there.", runner) == "Hello there."


async def test_fillers_are_said_between_deltas_and_left_out_of_what_is_remembered() -> None:
    gate = asyncio.Event()

    async def texts() -> AsyncIterator[str]:
        yield "Let me see."
        await gate.wait()
        yield "It is at"
        await gate.wait()
        yield " home."

    narration = Narration(texts())
    pieces = narration.pieces()
    assert await anext(pieces) == ("Let me see.", False)
    narration.interject("One moment.")
    assert await anext(pieces) == (" One moment. ", True)
    gate.set()
    assert await anext(pieces) == ("It is at", False)
    narration.interject("Let me check.")  # mid-sentence: dropped, not cut into the words
    assert await anext(pieces) == (" home.", False)
    await pieces.aclose()
    text = "Let me see. One moment. It is at home."
    assert narration.fillers == [(11, 24)]
    assert narration.unfilled(text) == "Let me see. It is at home."
    assert narration.unfilled(text[:16]) == "Let me see."
