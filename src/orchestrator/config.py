"""The orchestrator's configuration: one pydantic model, loaded from YAML
(configs/orchestrator.yaml), overridable by VOICEFLEET_ORCHESTRATOR__KEY variables and REDIS_URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from voicefleet.asr.config import ASRConfig
from voicefleet.fleet.config import RouterConfig
from voicefleet.fleet.speech import SpeakerSettings
from voicefleet.orchestrator.responder import ResponderConfig
from voicefleet.orchestrator.turn_state import TurnRules
from voicefleet.orchestrator.vad import VadConfig
from voicefleet.settings import load_config

ENV_PREFIX = "VOICEFLEET_ORCHESTRATOR"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Section):
    """The HTTP + WebSocket listener."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_message_bytes: int = Field(256 * 1024, ge=1024, description="largest WebSocket message")
    auth_token: str | None = Field(None, description="when set, hello.token must match")
    max_sessions: int = Field(32, ge=1)


class PipelineConfig(_Section):
    """Per-session behaviour."""

    vad: VadConfig = VadConfig()
    barge_in_min_speech_ms: int = Field(250, ge=20, description="voiced time that makes it real")
    barge_in_false_alarm_ms: int = Field(
        250, ge=20, description="silence that ends a barge-in candidate as noise (resume)"
    )
    speculative: bool = Field(True, description="transcribe and reply while the hangover runs")
    partial_interval_s: float = Field(
        1.0, ge=0, description="partial transcripts this often while speaking (0: off)"
    )
    playback_lead_ms: int = Field(120, ge=20, description="audio sent ahead of real time")
    first_frame_timeout_s: float = Field(10.0, gt=0, description="text sent, no frame yet")
    stall_timeout_s: float = Field(
        1.5, gt=0, description="no frame this long while audio is owed: fail over"
    )
    idle_timeout_s: float = Field(300.0, gt=0)
    max_duration_s: float = Field(3600.0, gt=0)
    max_turns: int = Field(0, ge=0, description="0: unlimited")

    def turn_rules(self) -> TurnRules:
        """The turn decisions' settings."""
        return TurnRules(
            speculative=self.speculative,
            onset_ms=self.vad.start_ms,
            barge_in_min_speech_ms=self.barge_in_min_speech_ms,
            false_alarm_ms=self.barge_in_false_alarm_ms,
            idle_timeout_s=self.idle_timeout_s,
            max_duration_s=self.max_duration_s,
            max_turns=self.max_turns,
        )

    def speaker_settings(self) -> SpeakerSettings:
        """The fleet client's deadlines."""
        return SpeakerSettings(
            first_frame_timeout_s=self.first_frame_timeout_s,
            stall_timeout_s=self.stall_timeout_s,
        )


class LiveKitConfig(_Section):
    """The LiveKit transport: the server, where the API credentials come from, the agent name."""

    enabled: bool = False
    url: str | None = Field(None, description="ws(s):// of the LiveKit server; else LIVEKIT_URL")
    api_key_env: str = "LIVEKIT_API_KEY"
    api_secret_env: str = "LIVEKIT_API_SECRET"
    agent_name: str = "voicefleet"
    token_ttl_s: int = Field(3600, ge=60, le=86_400)
    public_url: str | None = Field(
        None, description="LiveKit URL the browser dials (e.g. wss://host); else `url`"
    )

    def credentials(self) -> tuple[str, str] | None:
        """(api key, api secret) from the environment; None unless both are set."""
        key = os.environ.get(self.api_key_env, "")
        secret = os.environ.get(self.api_secret_env, "")
        return (key, secret) if key and secret else None


class TransportConfig(_Section):
    """Transports beside the WebSocket (which is always on)."""

    livekit: LiveKitConfig = LiveKitConfig()


class OrchestratorConfig(_Section):
    """Everything `voicefleet orchestrator` needs."""

    http: HttpConfig = HttpConfig()
    pipeline: PipelineConfig = PipelineConfig()
    asr: ASRConfig = ASRConfig()
    responder: ResponderConfig = ResponderConfig()
    router: RouterConfig = RouterConfig()
    transport: TransportConfig = TransportConfig()
    log_level: str = "INFO"


def load_orchestrator_config(
    path: Path | None, overrides: dict[str, Any] | None = None
) -> OrchestratorConfig:
    """YAML < environment (and REDIS_URL) < flags."""
    merged: dict[str, Any] = dict(overrides or {})
    if os.environ.get("REDIS_URL"):
        router = dict(merged.get("router", {}))
        router.setdefault("redis_url", os.environ["REDIS_URL"])
        merged["router"] = router
    return load_config(OrchestratorConfig, path, env_prefix=ENV_PREFIX, overrides=merged)
