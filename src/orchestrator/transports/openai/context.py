"""What the OpenAI-compatible routes share: the services, the fleet, the token and the
limits, and the names the fleet offers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from voicefleet.fleet.view import FleetView
from voicefleet.orchestrator.access import AccessToken
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.transports.admission import ClientAddress, ConnectionRate
from voicefleet.orchestrator.transports.openai.config import OpenAIApiConfig


@dataclass
class OpenAIApi:
    """What the routes share: the services, the fleet, the token and the limits."""

    config: OpenAIApiConfig
    services: Services
    fleet: FleetView
    access: AccessToken | None
    addresses: ClientAddress
    rate: ConnectionRate
    speaking: int = 0
    transcribing: int = 0
    started: float = field(default_factory=time.time)

    def fleet_voices(self) -> dict[str, str]:
        """Public voice -> model id, over every registered worker."""
        voices: dict[str, str] = {}
        for worker in self.fleet.workers.values():
            voices.update(worker.voices)
        return voices

    def fleet_models(self) -> dict[str, list[str]]:
        """Model id -> the public voices that speak with it (every model some worker offers)."""
        models: dict[str, list[str]] = {}
        for worker in self.fleet.workers.values():
            for model in worker.available_models:
                models.setdefault(model, [])
        for voice, model in sorted(self.fleet_voices().items()):
            models.setdefault(model, []).append(voice)
        return models

    def asr_model(self) -> str:
        """The configured ASR model's name."""
        asr = self.services.asr.config
        return asr.model_path or asr.model


Handler = Callable[[OpenAIApi, web.Request], Awaitable[web.StreamResponse]]
