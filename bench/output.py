"""How every benchmark prints its result: a table, then one JSON object as the last line."""

from __future__ import annotations

import json
from collections.abc import Mapping


def print_result(result: Mapping[str, float | int]) -> None:
    """A two-column table, then the same numbers as one JSON line (what tools read)."""
    width = max(len(key) for key in result) + 2
    print(f"{'measure':<{width}}{'value':>10}")
    for key, value in result.items():
        print(f"{key:<{width}}{value:>10}")
    print(json.dumps(dict(result)))
