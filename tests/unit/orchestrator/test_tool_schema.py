"""hello.tools: OpenAI function tools accepted as declared; anything else refused with a reason,
within the limits on count, size and depth; the orchestrator's tool names are its own."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from tests.tools import LOOKUP_ORDER
from voicefleet.orchestrator.protocol import (
    Hello,
    ProtocolError,
    TranscriptEvent,
    client_message_from_json,
    server_message_from_json,
    to_json,
)
from voicefleet.orchestrator.protocol_tools import ToolRequest, ToolResponse, TranscriptWord
from voicefleet.orchestrator.tool_config import HttpToolConfig, ToolsConfig
from voicefleet.orchestrator.tool_schema import ToolDeclarationError, client_tools

TOOL = LOOKUP_ORDER


def tool(**function: Any) -> dict[str, Any]:
    declared = copy.deepcopy(TOOL)
    declared["function"].update(function)
    return declared


def test_a_function_tool_is_accepted_as_declared() -> None:
    tools = client_tools([TOOL, tool(name="cancel-order", strict=True)], ToolsConfig())
    assert tools["lookup_order"] == TOOL
    assert tools["cancel-order"]["function"]["strict"] is True


def test_parameters_default_to_an_empty_object() -> None:
    declared = {"type": "function", "function": {"name": "ping"}}
    spec = client_tools([declared], ToolsConfig())["ping"]["function"]
    assert spec["parameters"] == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("declared", "why"),
    [
        ({"tools": []}, "must be a list"),
        ([{"type": "code", "function": {}}], '"type": "function"'),
        ([{"type": "function", "function": {}, "extra": 1}], "keys besides"),
        ([{"type": "function", "function": "x"}], "must be an object"),
        ([tool(name="has space")], "function.name"),
        ([tool(name="x" * 65)], "function.name"),
        ([tool(description=3)], "description must be a string"),
        ([tool(examples=[])], "unknown key"),
        ([tool(parameters={"type": "array"})], 'type must be "object"'),
        ([tool(parameters={"type": "object", "properties": {"a": 1}})], "properties"),
        ([tool(parameters={"type": "object", "required": ["a"]})], "unknown properties"),
        ([tool(strict="yes")], "strict"),
        ([TOOL, TOOL], "declared twice"),
        ([tool(name="get_time")], "orchestrator's own"),
    ],
)
def test_a_bad_declaration_is_refused_with_the_reason(declared: Any, why: str) -> None:
    with pytest.raises(ToolDeclarationError, match=why):
        client_tools(declared, ToolsConfig())


def test_limits_on_count_size_and_depth() -> None:
    config = ToolsConfig(max_client_tools=2, max_client_tools_bytes=2000)
    three = [tool(name=f"t{i}") for i in range(3)]
    with pytest.raises(ToolDeclarationError, match="at most 2"):
        client_tools(three, config)
    with pytest.raises(ToolDeclarationError, match="bytes of JSON"):
        client_tools([tool(description="x" * 2000)], config)
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(20):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(ToolDeclarationError, match="nested deeper"):
        client_tools([tool(parameters=deep)], ToolsConfig())
    assert client_tools([tool(name="t0"), tool(name="t1")], config).keys() == {"t0", "t1"}


def test_the_operators_tools_are_checked() -> None:
    with pytest.raises(ValidationError, match="letters"):
        HttpToolConfig(name="bad name", url="http://x/")
    with pytest.raises(ValidationError, match="http"):
        HttpToolConfig(name="ok", url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="unique"):
        ToolsConfig(http=[HttpToolConfig(name="get_time", url="http://x/")])
    config = ToolsConfig(builtin=[], http=[HttpToolConfig(name="weather", url="http://x/w")])
    assert config.names() == {"weather"}


def test_the_tool_messages_round_trip_through_the_codec() -> None:
    hello = client_message_from_json(
        '{"type":"hello","sample_rate":16000,"tools":[{"type":"function"}],"transcript_words":true}'
    )
    assert isinstance(hello, Hello) and hello.transcript_words and hello.tools
    answer = client_message_from_json(
        '{"type":"tool_response","request_id":"call-1","result":{"a":[1,2]}}'
    )
    assert answer == ToolResponse("call-1", {"a": [1, 2]})
    with pytest.raises(ProtocolError, match="request_id is empty"):
        client_message_from_json('{"type":"tool_response","request_id":""}')
    with pytest.raises(ProtocolError, match="transcript_words must be a bool"):
        client_message_from_json('{"type":"hello","sample_rate":16000,"transcript_words":1}')
    request = ToolRequest("call-1", "lookup_order", {"order_id": "4"}, 2)
    assert server_message_from_json(to_json(request)) == request
    final = TranscriptEvent("Hi", True, 1, [TranscriptWord("Hi", 0.1, 0.4, 0.9)], 0.9)
    assert server_message_from_json(to_json(final)) == final
