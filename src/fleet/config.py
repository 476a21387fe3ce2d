"""The fleet client's settings: where the registry is and how workers are chosen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voicefleet.rpc.channel import WorkerChannelConfig
from voicefleet.rpc.redis_conn import RedisAccess, check_url
from voicefleet.rpc.registry import DEFAULT_PREFIX


class RouterConfig(BaseModel):
    """Registry and routing settings."""

    model_config = ConfigDict(extra="forbid")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis: RedisAccess = Field(
        default_factory=RedisAccess,
        description="Redis password_file / username / ca_file (rediss://) beside the URL",
    )
    key_prefix: str = DEFAULT_PREFIX
    refresh_s: float = Field(2.0, gt=0, description="periodic re-read of the fleet")
    restart_grace_s: float = Field(
        5.0,
        ge=0,
        description="after Redis restarts empty, keep the last-known workers this long "
        "(or until they re-register) instead of routing to none",
    )
    failure_cooldown_s: float = Field(10.0, ge=0, description="skip a failed worker this long")
    required_capabilities: list[str] = Field(default_factory=lambda: ["streaming"])
    load_on_demand: bool = Field(
        True,
        description="a worker that offers the session's model but does not hold it may load it "
        "(its StartSession waits for the load, ~0.5 s); false: only workers with it resident",
    )
    worker: WorkerChannelConfig = Field(
        default_factory=WorkerChannelConfig,
        description="how to dial workers: token (or token_file), TLS, per-RPC deadlines",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        return check_url(url)
