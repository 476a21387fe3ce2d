"""How a client dials a worker: token, TLS and per-RPC deadlines (one pydantic model, so a
process's config can embed it, e.g. the orchestrator's router section)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import grpc
from pydantic import BaseModel, ConfigDict, Field, model_validator

Metadata = tuple[tuple[str, str], ...]


class ChannelConfigError(ValueError):
    """A token or certificate file that cannot be used; the message names the key and path."""


class WorkerTimeouts(BaseModel):
    """Default deadlines, in seconds, of the unary worker RPCs (a hung worker fails fast)."""

    model_config = ConfigDict(extra="forbid")

    start_session_s: float = Field(3.0, gt=0, description="StartSession (loads on demand)")
    end_session_s: float = Field(2.0, gt=0)
    control_s: float = Field(1.0, gt=0, description="PAUSE / RESUME / STOP")
    reload_s: float = Field(60.0, gt=0, description="Control RELOAD (reloads the model)")
    load_model_s: float = Field(60.0, gt=0)
    unload_model_s: float = Field(5.0, gt=0)
    query_s: float = Field(2.0, gt=0, description="ListModels, GetCapabilities")


class WorkerChannelConfig(BaseModel):
    """A client's settings for the worker gRPC link.

    TLS is on when `tls` is true or `tls_ca` is set (without tls_ca the system roots verify the
    worker); tls_cert + tls_key present a client certificate (workers with tls.client_ca).
    Files are read when a channel opens. The token is kept out of repr and logs.
    """

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(None, repr=False, description="bearer token the workers accept")
    token_file: str | None = Field(None, description="file holding the token (e.g. a secret)")
    tls: bool = False
    tls_ca: str | None = Field(None, description="CA bundle that signed the workers' certs")
    tls_cert: str | None = Field(None, description="client certificate chain (mTLS)")
    tls_key: str | None = Field(None, description="its private key")
    server_name: str | None = Field(
        None, description="name to verify in the worker's certificate instead of the host"
    )
    timeouts: WorkerTimeouts = WorkerTimeouts()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if not self.uses_tls and (self.tls_cert is not None or self.server_name is not None):
            raise ValueError("tls_cert, tls_key and server_name need tls (or tls_ca)")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether channels are dialled with TLS."""
        return self.tls or self.tls_ca is not None

    def resolved_token(self) -> str | None:
        """The token, read from token_file if that is how it is given."""
        if self.token_file is None:
            return self.token
        token = _read(self.token_file, "token_file").decode().strip()
        if not token:
            raise ChannelConfigError(f"token_file: {self.token_file} is empty")
        return token

    def metadata(self) -> Metadata:
        """The call metadata that carries the token (empty without one)."""
        token = self.resolved_token()
        return (("authorization", f"Bearer {token}"),) if token else ()

    def open_channel(self, address: str) -> grpc.aio.Channel:
        """A channel to one worker, TLS or plaintext as configured."""
        if not self.uses_tls:
            return grpc.aio.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(self.tls_ca, "tls_ca") if self.tls_ca else None,
            private_key=_read(self.tls_key, "tls_key") if self.tls_key else None,
            certificate_chain=_read(self.tls_cert, "tls_cert") if self.tls_cert else None,
        )
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return grpc.aio.secure_channel(address, credentials, options=options)


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ChannelConfigError(f"{key}: cannot read {path}: {error.strerror}") from None
