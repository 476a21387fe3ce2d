"""Tool declarations the tests share: an OpenAI function tool a client answers."""

from __future__ import annotations

from typing import Any

LOOKUP_ORDER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Where an order is.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
