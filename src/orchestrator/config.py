"""The orchestrator's configuration: one pydantic model, loaded from YAML
(configs/orchestrator.yaml), overridable by VOICEFLEET_ORCHESTRATOR__KEY variables and REDIS_URL."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from voicefleet.asr.config import ASRConfig
from voicefleet.fleet.config import RouterConfig
from voicefleet.fleet.speech import SpeakerSettings
from voicefleet.orchestrator.echo import EchoConfig
from voicefleet.orchestrator.end_of_turn import EndOfTurnConfig
from voicefleet.orchestrator.responder import ResponderConfig
from voicefleet.orchestrator.transports.openai.config import OpenAIApiConfig
from voicefleet.orchestrator.turn_state import TurnRules
from voicefleet.orchestrator.vad import VadConfig
from voicefleet.settings import load_config
from voicefleet.tracing import TracingConfig

ENV_PREFIX = "VOICEFLEET_ORCHESTRATOR"
# Read verbatim: the generic override parses values as YAML, which would turn a token such as
# "12345" into a number, or "null" into no token at all.
TOKEN_ENV = f"{ENV_PREFIX}__HTTP__AUTH_TOKEN"


# The Wyoming endpoint's port: the one Home Assistant's docs use for Piper.
WYOMING_PORT = 10200


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _networks(value: list[str]) -> list[str]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return value


class HttpConfig(_Section):
    """The HTTP + WebSocket listener: who gets in, and the limits on what they send."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    auth_token: SecretStr | None = Field(
        None,
        description="when set: required on /ws (hello.token or Authorization: Bearer), /token "
        "and every other route but /, /static/, /healthz, /readyz (and /metrics)",
    )
    auth_token_file: Path | None = Field(None, description="a file holding the token instead")
    metrics_auth: bool = Field(False, description="/metrics needs the token too")
    max_sessions: int = Field(32, ge=1, description="WebSocket connections, counted from upgrade")
    hello_timeout_s: float = Field(5.0, gt=0, description="hello must arrive this soon")
    connections_per_ip_per_minute: int = Field(
        60, ge=0, description="WebSocket upgrades per client address (token bucket); 0: off"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses/networks whose X-Forwarded-For names the client (e.g. Caddy)",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed on /ws besides the request's own host; * for any",
    )
    max_message_bytes: int = Field(
        256 * 1024, ge=1024, description="larger messages get message_too_large"
    )
    message_cap_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="larger messages close the socket (1009)"
    )
    max_text_chars: int = Field(2000, ge=1, description="characters per text message")
    max_session_text_chars: int = Field(
        50_000, ge=1, description="characters of text messages per session"
    )
    _token: str | None = PrivateAttr(None)

    @field_validator("auth_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str | SecretStr):
            # YAML turned it into a number or a boolean: quote it in the file.
            raise ValueError("must be a string (quote it in YAML)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            if item in ("*", "null"):
                continue
            parts = urlsplit(item)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
                raise ValueError(f"an origin is scheme://host[:port] (or *), not {item!r}")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> HttpConfig:
        if self.message_cap_bytes < self.max_message_bytes:
            raise ValueError("message_cap_bytes must be at least max_message_bytes")
        if self.auth_token is not None and self.auth_token_file is not None:
            raise ValueError("set auth_token or auth_token_file, not both")
        if self.auth_token_file is not None:
            try:
                secret = self.auth_token_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(f"auth_token_file: cannot read it: {error.strerror}") from None
            if not secret:
                raise ValueError(f"auth_token_file: {self.auth_token_file} is empty")
            self._token = secret
        elif self.auth_token is not None:
            self._token = self.auth_token.get_secret_value()
        return self

    def access_token(self) -> str | None:
        """The token every protected route needs (from auth_token or auth_token_file)."""
        return self._token


class PipelineConfig(_Section):
    """Per-session behaviour."""

    vad: VadConfig = VadConfig()
    end_of_turn: EndOfTurnConfig = EndOfTurnConfig()
    echo: EchoConfig = EchoConfig()
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
            end_of_turn=self.end_of_turn,
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


class WyomingConfig(_Section):
    """The Wyoming endpoint (Home Assistant; docs/wyoming.md): where it listens, who may
    connect, and the limits on what they send. Wyoming has no authentication of its own."""

    enabled: bool = Field(False, description="run it (`voicefleet up` and `wyoming` always do)")
    uri: str = Field(
        f"tcp://127.0.0.1:{WYOMING_PORT}", description="tcp://HOST:PORT or unix://PATH to listen on"
    )
    allowed_addresses: list[str] = Field(
        default_factory=list,
        description="client IPs/networks let in (others are closed at once); []: any that "
        "reach the socket",
    )
    sample_rate: int = Field(22050, ge=8000, le=48000, description="rate of synthesized audio")
    voice: str = Field("", description="public voice when a request names none ('': any)")
    max_connections: int = Field(16, ge=1, description="connections at once; more are refused")
    idle_timeout_s: float = Field(60.0, gt=0, description="no event this long closes it")
    max_event_bytes: int = Field(
        1024 * 1024, ge=4096, description="an event's data + payload; larger: error, closed"
    )
    max_text_chars: int = Field(5000, ge=1, description="characters of text per synthesis")
    max_audio_s: float = Field(30.0, gt=0, le=600, description="audio per transcription")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "unix" and parts.path:
            return value
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "tcp" or not parts.hostname or port is None:
            raise ValueError(f"tcp://HOST:PORT or unix://PATH, not {value!r}")
        return value

    @field_validator("allowed_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return _networks(value)


class TransportConfig(_Section):
    """Transports beside the WebSocket (which is always on)."""

    livekit: LiveKitConfig = LiveKitConfig()
    wyoming: WyomingConfig = WyomingConfig()


class OrchestratorConfig(_Section):
    """Everything `voicefleet orchestrator` needs."""

    http: HttpConfig = HttpConfig()
    pipeline: PipelineConfig = PipelineConfig()
    asr: ASRConfig = ASRConfig()
    responder: ResponderConfig = ResponderConfig()
    router: RouterConfig = RouterConfig()
    transport: TransportConfig = TransportConfig()
    openai_api: OpenAIApiConfig = OpenAIApiConfig()
    tracing: TracingConfig = TracingConfig()
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
    if os.environ.get(TOKEN_ENV, "").strip():
        merged["http"] = {"auth_token": os.environ[TOKEN_ENV], **merged.get("http", {})}
    return load_config(OrchestratorConfig, path, env_prefix=ENV_PREFIX, overrides=merged)
