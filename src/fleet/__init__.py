"""The fleet client: the registry view, the router, the worker pool and the speaker (one owner
per worker stream, with failover). Shared by the orchestrator and the livekit-agents plugin."""

from voicefleet.fleet.config import RouterConfig
from voicefleet.fleet.errors import NoWorkerAvailable, UnknownVoice
from voicefleet.fleet.pool import WorkerPool
from voicefleet.fleet.router import Router
from voicefleet.fleet.view import FleetView

__all__ = ["FleetView", "NoWorkerAvailable", "Router", "RouterConfig", "UnknownVoice", "WorkerPool"]
