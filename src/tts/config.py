"""The worker's configuration: one pydantic model, loaded from YAML (configs/worker.yaml),
overridable by VOICEFLEET_WORKER__KEY environment variables, REDIS_URL and CLI flags."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from voicefleet.rpc.redis_conn import RedisAccess, check_url
from voicefleet.rpc.registry import DEFAULT_PREFIX
from voicefleet.settings import load_config
from voicefleet.tracing import TracingConfig
from voicefleet.tts.adapters.base import ModelSpec
from voicefleet.tts.segmenter import FirstSegment

ENV_PREFIX = "VOICEFLEET_WORKER"
BUNDLED_PIPER_ID = "en_US-joe-medium"


def _default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _default_models() -> list[ModelSpec]:
    return [
        ModelSpec(id=BUNDLED_PIPER_ID, adapter="piper", languages=("en-US",), voices={"joe": ""})
    ]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelManagerConfig(_Section):
    """Residency policy."""

    ttl_s: float = Field(600.0, gt=0, description="evict a model unused for this long")
    resident_cap: int = Field(2, ge=1, description="most models resident at once")
    evict_interval_s: float = Field(5.0, gt=0, description="how often eviction runs")
    pin_default: bool = Field(True, description="never evict the default model")


class LoudnessConfig(_Section):
    """Output loudness."""

    target_lufs: float = Field(-16.0, le=0)
    ceiling_dbfs: float = Field(
        -1.5, le=0, description="sample-peak ceiling (true peak stays <= -1)"
    )


class FirstSegmentConfig(_Section):
    """How a stream's first segment is cut: the listener waits for its synthesis alone.

    Shorter is sooner (Piper: ~40 ms plus ~8 ms a word on 2 cores) but puts a restart of the
    voice inside the first sentence; docs/segments.md has the measurements.
    """

    mode: Literal["words", "clause", "sentence"] = Field(
        "words",
        description="words: at the first clause break or an earlier word boundary before a "
        "conjunction/preposition (min_words..max_words); clause: at the first clause break "
        "only; sentence: the whole first sentence",
    )
    min_words: int = Field(3, ge=1, le=50, description="words mode: fewest words before a cut")
    max_words: int = Field(
        8,
        ge=1,
        le=50,
        description="words mode: most words before an opener; from here on a cut may also go "
        "before an article, determiner, pronoun or number",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_words > self.max_words:
            raise ValueError("min_words must not exceed max_words")
        return self

    def rule(self) -> FirstSegment:
        """The segmenter's form of these settings."""
        return FirstSegment(self.mode, self.min_words, self.max_words)


class RegistryConfig(_Section):
    """Redis registration."""

    redis_url: str | None = Field("redis://127.0.0.1:6379/0", description="null: do not register")
    redis: RedisAccess = Field(
        default_factory=RedisAccess,
        description="Redis password_file / username / ca_file (rediss://) beside the URL",
    )
    key_prefix: str = DEFAULT_PREFIX
    heartbeat_s: float = Field(1.0, gt=0)
    record_ttl_s: float = Field(3.0, gt=0)

    @model_validator(mode="after")
    def _ttl_outlives_heartbeat(self) -> Self:
        if self.redis_url is not None:
            check_url(self.redis_url)
        if self.record_ttl_s <= self.heartbeat_s:
            raise ValueError("record_ttl_s must be longer than heartbeat_s")
        return self


class LimitsConfig(_Section):
    """What one worker accepts."""

    # A client holds its session across replies (the orchestrator: one per conversation, also
    # while it listens), so this bounds conversations, not load: the synthesis threads share
    # the CPU by deadline. 32 conversations on one 2-core worker: bench/load.py.
    max_sessions: int = Field(64, ge=1)
    max_sessions_per_credential: int | None = Field(
        None, ge=1, description="most sessions one caller (token identity or peer) holds"
    )
    max_chunk_chars: int = Field(4_000, ge=1, description="longest single TextChunk")
    max_stream_chars: int = Field(100_000, ge=1, description="most text in one Synthesize stream")
    session_idle_s: float = Field(300.0, gt=0, description="end sessions idle this long")


class MetricsConfig(_Section):
    """The Prometheus endpoint (docs/operations.md, "Metrics"). Off unless a port is set: several
    workers often share one host (`voicefleet up`, tests), and a fixed default would collide."""

    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 in a container)")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="HTTP port of /metrics; null: no endpoint; 0: any free port (the registry "
        "record's metrics_port says which)",
    )


# RFC 6750's b64token (hex and base64url fit): it travels as "authorization: Bearer <token>".
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")
_IDENTITY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_TOKEN_CHARS = 16
DEFAULT_IDENTITY = "default"


def check_token(token: str, where: str) -> str:
    """The token if well formed; the error names where it came from, never the token."""
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token):
        raise ValueError(
            f"{where}: a token is at least {MIN_TOKEN_CHARS} characters of "
            "[A-Za-z0-9._~+/-] (e.g. openssl rand -hex 32)"
        )
    return token


class AuthConfig(_Section):
    """Bearer tokens a caller must present; none configured: the worker is open.

    Tokens are plain str (not SecretStr) so environment overrides compare like any other field;
    repr=False keeps them out of every repr and log of the config.
    """

    token: str | None = Field(None, repr=False, description="the token of identity 'default'")
    token_file: str | None = Field(None, description="file holding that token (e.g. a secret)")
    tokens: dict[str, str] = Field(
        default_factory=dict, repr=False, description="identity name -> token, one per client"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        if self.token is not None:
            check_token(self.token, "token")
        for name, token in self.tokens.items():
            if not _IDENTITY.match(name):
                raise ValueError(f"tokens: identity {name!r} must match {_IDENTITY.pattern}")
            check_token(token, f"tokens.{name}")
        if DEFAULT_IDENTITY in self.tokens and (self.token or self.token_file):
            raise ValueError(f"tokens: {DEFAULT_IDENTITY!r} is the identity of token/token_file")
        if len(set(self.tokens.values())) != len(self.tokens):
            raise ValueError("tokens: two identities share one token")
        return self

    @property
    def configured(self) -> bool:
        """Whether any token is configured (token_file is read at start-up)."""
        return bool(self.token or self.token_file or self.tokens)


class TLSConfig(_Section):
    """TLS for the gRPC server; client_ca also requires client certificates (mTLS)."""

    cert: str | None = Field(None, description="server certificate chain (PEM)")
    key: str | None = Field(None, description="its private key (PEM)")
    client_ca: str | None = Field(None, description="CA bundle client certificates must chain to")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        if self.client_ca is not None and self.cert is None:
            raise ValueError("client_ca (mTLS) needs cert and key")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the server speaks TLS."""
        return self.cert is not None


class WorkerConfig(_Section):
    """Everything `voicefleet worker` needs."""

    name: str = Field(default_factory=_default_name, min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    advertise_address: str | None = Field(
        None, description="host:port others dial; default host:port"
    )
    max_lead_ms: int = Field(200, ge=20, description="audio sent ahead of real time, at most")
    first_segment: FirstSegmentConfig = FirstSegmentConfig()
    synthesis_threads: int = Field(2, ge=1, description="segments synthesized at once")
    synthesis_order: Literal["deadline", "arrival"] = Field(
        "deadline",
        description="deadline: the segment whose listener needs it first; arrival: first come",
    )
    # A paced reply's later segments are rendered when its listener has less than this much
    # audio left, not all at once: a burst of new replies then gets the CPU first (bench/load.py),
    # and a reply cut off by a barge-in never renders what nobody would hear. One-shot (unpaced)
    # requests always render at once. null: every segment as soon as the text is in.
    render_ahead_ms: int | None = Field(
        2000, ge=200, description="render a paced reply's next segment this long before it plays"
    )
    # Under load, which goes first: a new reply's first segment (its listener waits in silence)
    # or a started reply's next one (its listener hears a gap if it comes late). The first
    # segment goes first only while the other's listener has more than this much audio left.
    # 500 favoured first audio and left gaps mid-reply at 32 sessions (bench/load.py; fixes.md).
    first_segment_slack_ms: int = Field(
        1500, ge=0, le=10_000, description="a new reply's first segment is due within this"
    )
    drain_s: float = Field(10.0, ge=0, description="grace for running streams on SIGTERM")
    default_model: str = BUNDLED_PIPER_ID
    models: list[ModelSpec] = Field(default_factory=_default_models)
    model_manager: ModelManagerConfig = ModelManagerConfig()
    loudness: LoudnessConfig = LoudnessConfig()
    registry: RegistryConfig = RegistryConfig()
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    auth: AuthConfig = AuthConfig()
    tls: TLSConfig = TLSConfig()
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_model_in_catalog(self) -> Self:
        ids = [spec.id for spec in self.models]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate model ids in models: {ids}")
        if self.default_model not in ids:
            raise ValueError(f"default_model {self.default_model!r} is not in models ({ids})")
        owners: dict[str, str] = {}
        for spec in self.models:
            for voice in spec.voices:
                if voice in owners:
                    raise ValueError(
                        f"voice {voice!r} is named by two models: {owners[voice]!r} and {spec.id!r}"
                    )
                owners[voice] = spec.id
        from voicefleet.tts.adapters import adapter_class

        for spec in self.models:
            found = adapter_class(spec.adapter)
            if found is not None:  # an unknown adapter is refused when the model loads
                found.check_options(spec)
        return self

    def address(self, bound_port: int) -> str:
        """The address to advertise in the registry."""
        if self.advertise_address:
            return self.advertise_address
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "[::]") else self.host
        return f"{host}:{bound_port}"


def model_overrides(adapter: str | None, model: str | None) -> dict[str, Any]:
    """Turn --adapter/--model flags into config overrides.

    --model names a catalog id, or a path to a model file (which becomes a catalog entry whose
    id is the file's stem); --adapter alone makes that adapter's model the default.
    """
    if model is None and adapter is None:
        return {}
    if model is not None and not Path(model).suffix:
        return {"default_model": model}
    spec_id = Path(model).name.removesuffix(".onnx") if model else (adapter or "model")
    spec: dict[str, Any] = {"id": spec_id, "adapter": adapter or "piper"}
    if model:
        spec["path"] = model
    return {"models": [spec], "default_model": spec_id}


def load_worker_config(path: Path | None, overrides: dict[str, Any] | None = None) -> WorkerConfig:
    """Load the worker config: YAML < env (and REDIS_URL) < flags."""
    merged: dict[str, Any] = {}
    if os.environ.get("REDIS_URL"):
        merged["registry"] = {"redis_url": os.environ["REDIS_URL"]}
    for key, value in (overrides or {}).items():
        if key == "registry" and "registry" in merged:
            merged["registry"].update(value)
        else:
            merged[key] = value
    return load_config(WorkerConfig, path, env_prefix=ENV_PREFIX, overrides=merged)
