"""Worker authentication: a bearer token in gRPC metadata on every call but health checks.

The interceptor refuses a call without a valid token (UNAUTHENTICATED, before any handler runs)
and records who is calling in a context variable: grpc.aio runs the interceptors and the handler
in one contextvars.Context. The servicer asks `Credentials.caller()` who owns a session. With no
token configured the worker is open and a caller is its peer's IP address (see docs/security.md).
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from voicefleet.settings import ConfigError
from voicefleet.tts.config import DEFAULT_IDENTITY, AuthConfig, check_token
from voicefleet.tts.errors import Unauthenticated

log = logging.getLogger(__name__)

# Load balancers, orchestrators and `docker compose` probe health without a token.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
HEADER = "authorization"
MISSING = f"this worker requires a token: send gRPC metadata '{HEADER}: Bearer <token>'"
MALFORMED = f"'{HEADER}' metadata must be 'Bearer <token>'"
INVALID = "invalid token"
# How long a refused client-streaming call may go on sending before it gets its status.
REFUSAL_READ_S = 1.0

_caller: ContextVar[str | None] = ContextVar("voicefleet_worker_caller", default=None)

Metadata = Iterable[tuple[str, str | bytes]]


def peer_identity(peer: str) -> str:
    """A caller without a token: its IP address without the port (a reconnecting channel keeps
    its sessions); "ipv4:10.0.0.5:41234" -> "ipv4:10.0.0.5"."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rsplit(':', 1)[0]}"
    return peer


@dataclass(frozen=True)
class Credentials:
    """The tokens a worker accepts, each under an identity name."""

    tokens: tuple[tuple[str, bytes], ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether callers must present a token."""
        return bool(self.tokens)

    @property
    def identities(self) -> list[str]:
        """The identity names (never the tokens)."""
        return [name for name, _ in self.tokens]

    def authenticate(self, metadata: Metadata) -> str:
        """The identity whose token the metadata carries; Unauthenticated otherwise."""
        value = next((v for k, v in metadata if k.lower() == HEADER), None)
        if value is None:
            raise Unauthenticated(MISSING)
        raw = value.encode() if isinstance(value, str) else value
        scheme, _, presented = raw.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            raise Unauthenticated(MALFORMED)
        presented = presented.strip()
        found: str | None = None
        for name, token in self.tokens:  # every token, so timing says nothing about which
            if hmac.compare_digest(presented, token):
                found = name
        if found is None:
            raise Unauthenticated(INVALID)
        return found

    def caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """Who makes this call: the identity the interceptor checked, or without tokens the
        peer's address. Raises Unauthenticated if tokens are on and no interceptor ran."""
        identity = _caller.get()
        if identity is not None:
            return identity
        if self.enabled:
            return self.authenticate(context.invocation_metadata() or ())
        return peer_identity(context.peer())


def _read_token_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"auth.token_file: cannot read {path}: {error}") from None
    if not text:
        raise ConfigError(f"auth.token_file: {path} is empty")
    try:
        return check_token(text, f"auth.token_file ({path})")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def load_credentials(auth: AuthConfig) -> Credentials:
    """The configured tokens, token_file read now (a bad file fails start-up)."""
    tokens: dict[str, str] = dict(auth.tokens)
    single = auth.token if auth.token_file is None else _read_token_file(auth.token_file)
    if single is not None:
        if single in tokens.values():
            raise ConfigError("auth: token_file holds a token also listed in auth.tokens")
        tokens = {DEFAULT_IDENTITY: single, **tokens}
    return Credentials(tuple((name, token.encode()) for name, token in tokens.items()))


if TYPE_CHECKING:  # generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


def _refusal(handler: Handler, message: str) -> Handler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        log.info("refused %s: %s", context.peer(), message)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # Let the client finish writing first (briefly): a grpc.aio client whose write fails
        # because the call has ended reports INTERNAL, not our status (grpc/grpc#36066).
        with contextlib.suppress(Exception):  # too slow or malformed: refused all the same
            async with asyncio.timeout(REFUSAL_READ_S):
                async for _ in requests:
                    pass
        await refuse(requests, context)

    shapes = {
        (False, False): (grpc.unary_unary_rpc_method_handler, refuse),
        (False, True): (grpc.unary_stream_rpc_method_handler, refuse),
        (True, False): (grpc.stream_unary_rpc_method_handler, refuse_stream),
        (True, True): (grpc.stream_stream_rpc_method_handler, refuse_stream),
    }
    make, behavior = shapes[handler.request_streaming, handler.response_streaming]
    return make(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires a valid bearer token on every method but the health service."""

    def __init__(
        self, credentials: Credentials, refused: Callable[[str], None] | None = None
    ) -> None:
        self.credentials = credentials
        self._refused = refused  # told the RPC's name (e.g. StartSession) of each refusal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Pass authenticated calls on (their identity recorded); refuse the others."""
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        try:
            identity = self.credentials.authenticate(handler_call_details.invocation_metadata)
        except Unauthenticated as error:
            if self._refused is not None:
                self._refused(handler_call_details.method.rsplit("/", 1)[-1])
            return _refusal(handler, f"{handler_call_details.method}: {error}")
        _caller.set(identity)
        return handler
