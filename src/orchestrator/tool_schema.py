"""Tools a client declares in `hello.tools`: OpenAI function-tool schemas, checked and bounded.

Each item is `{"type": "function", "function": {"name", "description"?, "parameters"?,
"strict"?}}`; `parameters` is a JSON schema of an object. A declaration the orchestrator cannot
pass on as is (a bad shape, a name the orchestrator's own tools use, too many, too large, nested
too deeply) refuses the hello with `bad_tools`: a half-accepted tool list would leave the model
calling tools that are not there.
"""

from __future__ import annotations

import json
from typing import Any

from voicefleet.orchestrator.tool_config import TOOL_NAME, ToolsConfig

MAX_SCHEMA_DEPTH = 16
_FUNCTION_KEYS = {"name", "description", "parameters", "strict"}


class ToolDeclarationError(ValueError):
    """`hello.tools` cannot be accepted; the message says why."""


def client_tools(declared: object, config: ToolsConfig) -> dict[str, dict[str, Any]]:
    """The client's tools by name, each as the chat request declares it."""
    if not isinstance(declared, list):
        raise ToolDeclarationError("hello.tools must be a list of function tools")
    if len(declared) > config.max_client_tools:
        raise ToolDeclarationError(
            f"hello.tools has {len(declared)} tools; at most {config.max_client_tools}"
        )
    if _depth(declared) > MAX_SCHEMA_DEPTH:
        raise ToolDeclarationError(f"hello.tools is nested deeper than {MAX_SCHEMA_DEPTH} levels")
    size = len(json.dumps(declared, separators=(",", ":")).encode("utf-8"))
    if size > config.max_client_tools_bytes:
        raise ToolDeclarationError(
            f"hello.tools is {size} bytes of JSON; at most {config.max_client_tools_bytes}"
        )
    tools: dict[str, dict[str, Any]] = {}
    reserved = config.names()
    for position, item in enumerate(declared):
        spec = _function_tool(item, f"hello.tools[{position}]")
        name = spec["function"]["name"]
        if name in reserved:
            raise ToolDeclarationError(f"tool {name!r} is one of the orchestrator's own tools")
        if name in tools:
            raise ToolDeclarationError(f"tool {name!r} is declared twice")
        tools[name] = spec
    return tools


def _function_tool(item: object, where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("type") != "function":
        raise ToolDeclarationError(f'{where} must be an object with "type": "function"')
    if set(item) - {"type", "function"}:
        raise ToolDeclarationError(f'{where} has keys besides "type" and "function"')
    function = item.get("function")
    if not isinstance(function, dict):
        raise ToolDeclarationError(f"{where}.function must be an object")
    unknown = sorted(set(function) - _FUNCTION_KEYS)
    if unknown:
        raise ToolDeclarationError(f"{where}.function: unknown key(s) {', '.join(unknown)}")
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise ToolDeclarationError(f"{where}.function.name must be 1-64 letters, digits, _ or -")
    description = function.get("description", "")
    if not isinstance(description, str):
        raise ToolDeclarationError(f"{where}.function.description must be a string")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    _check_parameters(parameters, f"{where}.function.parameters")
    spec: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if "strict" in function:
        if not isinstance(function["strict"], bool):
            raise ToolDeclarationError(f"{where}.function.strict must be true or false")
        spec["strict"] = function["strict"]
    return {"type": "function", "function": spec}


def _check_parameters(parameters: object, where: str) -> None:
    if not isinstance(parameters, dict):
        raise ToolDeclarationError(f"{where} must be a JSON schema object")
    if parameters.get("type", "object") != "object":
        raise ToolDeclarationError(f'{where}.type must be "object"')
    properties = parameters.get("properties", {})
    schemas = properties.values() if isinstance(properties, dict) else [None]
    if not all(isinstance(schema, dict) for schema in schemas):
        raise ToolDeclarationError(f"{where}.properties must map names to schemas")
    required = parameters.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ToolDeclarationError(f"{where}.required must be a list of names")
    missing = sorted(set(required) - set(properties))
    if missing:
        raise ToolDeclarationError(f"{where}.required names unknown properties: {missing}")


def _depth(value: object) -> int:
    """How deeply lists and objects nest in `value` (iterative: no recursion limit to hit)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_SCHEMA_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
