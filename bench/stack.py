"""The stack every end-to-end benchmark runs against: a valkey server and a Stack (workers and
orchestrators as real processes, tests/integration/conftest.py) in a temporary directory,
all stopped on the way out."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.conftest import Stack


@contextmanager
def running_stack() -> Iterator[tuple[Stack, int]]:
    """(the Stack, valkey's pid); start workers and orchestrators on the Stack."""
    from tests.valkey import start_valkey

    server = start_valkey()
    try:
        assert server._process is not None
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(Path(tmp), f"redis://127.0.0.1:{server.port}/0")
            try:
                yield stack, server._process.pid
            finally:
                stack.stop()
    finally:
        server.stop()
