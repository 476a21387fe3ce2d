"""What can go wrong when speaking through the fleet."""

from __future__ import annotations


class NoWorkerAvailable(Exception):
    """No registered worker can serve the request; the message says why."""


class UnknownVoice(NoWorkerAvailable):
    """No registered worker offers the public voice asked for; the message lists those that
    the fleet offers."""
