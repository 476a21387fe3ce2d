"""Tool calls as streamed: deltas joined into calls (split arguments, parallel calls, servers that
send a call whole), and a round as the chat messages that record it."""

from __future__ import annotations

import json

import pytest

from voicefleet.orchestrator.tool_calls import ToolCall, ToolCallAssembler, ToolOutcome, ToolRound


def test_arguments_split_anywhere_are_joined() -> None:
    calls = ToolCallAssembler()
    assert calls.empty
    calls.feed([{"index": 0, "id": "call_1", "function": {"name": "lookup_order"}}])
    for piece in ['{"or', 'der_id": "4', "2", '"}']:
        calls.feed([{"index": 0, "function": {"arguments": piece}}])
    [call] = calls.calls()
    assert call == ToolCall("call_1", "lookup_order", '{"order_id": "42"}')
    assert call.parsed_arguments() == {"order_id": "42"}


def test_parallel_calls_interleave_by_index_and_come_out_in_order() -> None:
    calls = ToolCallAssembler()
    calls.feed([{"index": 1, "id": "b", "function": {"name": "get_time", "arguments": "{"}}])
    calls.feed([{"index": 0, "id": "a", "function": {"name": "weather", "arguments": '{"c'}}])
    calls.feed([{"index": 1, "function": {"arguments": "}"}}])
    calls.feed([{"index": 0, "function": {"arguments": 'ity": "Oslo"}'}}])
    assert [(c.id, c.name, c.parsed_arguments()) for c in calls.calls()] == [
        ("a", "weather", {"city": "Oslo"}),
        ("b", "get_time", {}),
    ]


def test_whole_calls_without_index_or_id_and_object_arguments() -> None:
    calls = ToolCallAssembler()
    calls.feed(
        [
            {"function": {"name": "one", "arguments": {"x": 1}}},
            {"function": {"name": "two"}},
            "junk",
        ]
    )
    calls.feed(None)
    assert [(c.id, c.name, c.parsed_arguments()) for c in calls.calls()] == [
        ("call_0", "one", {"x": 1}),
        ("call_1", "two", {}),
    ]


def test_a_call_without_a_name_is_not_a_call() -> None:
    calls = ToolCallAssembler()
    calls.feed([{"index": 0, "function": {"arguments": "{}"}}])
    assert not calls.empty and calls.calls() == []


@pytest.mark.parametrize("arguments", ['{"a": ', "[1, 2]", '"text"'])
def test_arguments_that_are_not_an_object_are_refused(arguments: str) -> None:
    with pytest.raises(ValueError, match="lookup"):
        ToolCall("c", "lookup", arguments).parsed_arguments()


def test_a_round_is_the_assistant_message_and_one_tool_message_per_result() -> None:
    first = ToolOutcome(ToolCall("a", "weather", '{"city":"Oslo"}'), {"forecast": "rain"})
    second = ToolOutcome(ToolCall("b", "get_time", ""), error="no result within 10 s")
    messages = ToolRound((first, second)).messages("Let me see.")
    assert messages[0] == {
        "role": "assistant",
        "content": "Let me see.",
        "tool_calls": [
            {
                "id": "a",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
            },
            {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert messages[1] == {"role": "tool", "tool_call_id": "a", "content": '{"forecast":"rain"}'}
    assert json.loads(messages[2]["content"]) == {"error": "no result within 10 s"}
    assert ToolRound((first,)).messages()[0]["content"] is None
