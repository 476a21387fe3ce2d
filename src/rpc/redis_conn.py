"""Connecting to the registry's Redis: one place for URLs, passwords and TLS.

`redis://[[user]:password@]host:port/db`, `rediss://…` (TLS; the server certificate is checked
against the system's CAs, or `ca_file`) and `unix:///path.sock` are accepted. A password can
come from a file (a mounted secret) instead of the URL. Log lines name a URL without its
password (`redacted`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio import Redis

SCHEMES = ("redis", "rediss", "unix")


class RedisConfigError(ValueError):
    """A Redis URL or secret that cannot be used."""


class RedisAccess(BaseModel):
    """How to reach and authenticate to the registry (beside its URL)."""

    model_config = ConfigDict(extra="forbid")

    password_file: Path | None = Field(
        None, description="file holding the Redis password (instead of one in the URL)"
    )
    username: str | None = Field(None, description="ACL user for password_file (default user)")
    ca_file: Path | None = Field(
        None, description="rediss://: CA bundle that signed the server's certificate"
    )

    @field_validator("password_file", "ca_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path


def check_url(url: str) -> str:
    """The URL if its scheme is one Redis speaks, else a clear error (password never shown)."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise RedisConfigError(
            f"Redis URL {redacted(url)!r}: scheme must be one of {', '.join(SCHEMES)} "
            "(e.g. redis://host:6379/0, rediss://host:6380/0)"
        )
    return url


def redacted(url: str) -> str:
    """The URL with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(url: str, access: RedisAccess | None = None, *, timeout_s: float) -> Redis:
    """A client for `url` (connections are opened on first use)."""
    check_url(url)
    access = access or RedisAccess()
    options: dict[str, object] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    if access.password_file is not None:
        password = access.password_file.read_text(encoding="utf-8").strip()
        if not password:
            raise RedisConfigError(f"password_file: {access.password_file} is empty")
        options["password"] = password
        if access.username:
            options["username"] = access.username
    if access.ca_file is not None:
        if urlsplit(url).scheme != "rediss":
            raise RedisConfigError("ca_file is for rediss:// URLs (TLS)")
        options["ssl_ca_certs"] = str(access.ca_file)
    return Redis.from_url(url, **options)  # type: ignore[arg-type]
