"""What can go wrong when speaking through the fleet."""

from __future__ import annotations


class NoWorkerAvailable(Exception):
    """No registered worker can serve the request; the message says why."""
