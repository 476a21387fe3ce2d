"""The WebSocket transport (`/ws`): JSON control and events, binary PCM both ways.

Before the upgrade a connection must keep to its address's connection rate (429) and come from
an allowed Origin (403); an Authorization header, when sent, must carry the token (401, checked
by the access middleware). From the upgrade it counts toward `http.max_sessions`; `hello` must
come within `http.hello_timeout_s` and carry the token unless the header did.

Bad input gets an `error` event with a stable code and the session goes on where it can: binary
before hello, odd-length PCM, oversized messages (up to the hard cap), too much text, unknown
types, bad JSON. A refused hello, a limit, shutdown or a broken connection ends it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WSMessage, WSMsgType, web

from voicefleet.orchestrator.access import AccessToken, OriginPolicy, has_token
from voicefleet.orchestrator.config import HttpConfig
from voicefleet.orchestrator.controller import TurnController
from voicefleet.orchestrator.protocol import (
    ErrorEvent,
    Hello,
    ProtocolError,
    Ready,
    SpeakText,
    client_message_from_json,
    dispatch_control,
)
from voicefleet.orchestrator.responder import Responder
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.tool_schema import ToolDeclarationError
from voicefleet.orchestrator.transports.admission import ClientAddress, ConnectionRate
from voicefleet.orchestrator.transports.websocket_sink import CLOSE_TIMEOUT_S, WebSocketSink

log = logging.getLogger(__name__)

_ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


@dataclass(eq=False)
class _Connection:
    """One upgraded socket, counted toward max_sessions until it ends."""

    ws: web.WebSocketResponse
    sink: WebSocketSink
    address: str
    authenticated: bool
    session: TurnController | None = None
    text_chars: int = 0


class WebSocketTransport:
    """The aiohttp handler for `/ws`."""

    def __init__(
        self,
        services: Services,
        new_responder: Callable[[], Responder],
        http: HttpConfig,
        token: AccessToken | None,
    ) -> None:
        self.services = services
        self.new_responder = new_responder
        self.http = http
        self.token = token
        self.origins = OriginPolicy(http.allowed_origins)
        self.rate = ConnectionRate(http.connections_per_ip_per_minute)
        self.addresses = ClientAddress(http.trusted_proxies)
        self.connections: set[_Connection] = set()
        self.sessions: dict[str, TurnController] = {}
        self.shutting_down = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one connection until bye, hang-up, a limit, shutdown or a fatal error."""
        address = self.addresses.of(request)
        refusal = self._check_upgrade(request, address)
        if refusal is not None:
            return refusal
        ws = web.WebSocketResponse(
            max_msg_size=self.http.message_cap_bytes, heartbeat=30.0, timeout=CLOSE_TIMEOUT_S
        )
        connection = _Connection(
            ws, WebSocketSink(ws, request.transport), address, has_token(request, self.token)
        )
        # Counted from the upgrade, hello or not: idle sockets take capacity like sessions do.
        full = self.shutting_down or len(self.connections) >= self.http.max_sessions
        if not full:
            self.connections.add(connection)
        try:
            await ws.prepare(request)
            if self.shutting_down:
                await self._refuse(connection, "shutdown", "the orchestrator is shutting down")
            elif full:
                await self._refuse(
                    connection,
                    "too_many_sessions",
                    f"this orchestrator is at max_sessions={self.http.max_sessions}",
                )
            else:
                await self._serve(connection)
        finally:
            self.connections.discard(connection)
            if connection.session is not None:
                await connection.session.close("disconnected")
                self.sessions.pop(connection.session.id, None)
        return ws

    async def shutdown(self, _app: web.Application | None = None) -> None:
        """Every connection gets error `shutdown` (fatal), its session is closed (ending its
        worker session) and its socket closed; new connections are refused."""
        self.shutting_down = True
        connections = list(self.connections)
        if connections:
            log.info("closing %d WebSocket connection(s) for shutdown", len(connections))
        await asyncio.gather(*(self._shut(c) for c in connections), return_exceptions=True)

    async def _shut(self, connection: _Connection) -> None:
        try:
            await connection.sink.send_event(
                ErrorEvent(code="shutdown", message="the orchestrator is shutting down", fatal=True)
            )
            if connection.session is not None:
                await connection.session.close("shutdown")
        finally:
            await connection.sink.close("shutdown")

    def _check_upgrade(self, request: web.Request, address: str) -> web.Response | None:
        retry_s = self.rate.admit(address)
        if retry_s is not None:
            per_minute = self.http.connections_per_ip_per_minute
            log.info("refused /ws from %s: over %d connections a minute", address, per_minute)
            return self._http_refusal(
                429,
                "rate_limited",
                f"more than {per_minute} connections a minute from {address}",
                {"Retry-After": str(max(1, math.ceil(retry_s)))},
            )
        origin = request.headers.get("Origin")
        if not self.origins.allows(origin, request.headers.get("Host")):
            log.info("refused /ws from %s: Origin %r is not allowed", address, origin)
            return self._http_refusal(
                403, "origin_not_allowed", f"Origin {origin} is not allowed (http.allowed_origins)"
            )
        return None

    def _http_refusal(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.services.metrics.errors.labels(code).inc()
        return web.json_response(
            {"error": code, "message": message}, status=status, headers=headers
        )

    async def _refuse(self, connection: _Connection, code: str, message: str) -> None:
        """A fatal error event, then close."""
        self.services.metrics.errors.labels(code).inc()
        await connection.sink.send_event(ErrorEvent(code=code, message=message, fatal=True))
        await connection.sink.close(code)

    async def _serve(self, connection: _Connection) -> None:
        ws = connection.ws
        loop = asyncio.get_running_loop()
        hello_by = loop.time() + self.http.hello_timeout_s
        while True:
            timeout: float | None = None
            if connection.session is None:
                timeout = hello_by - loop.time()
                if timeout <= 0:
                    seconds = self.http.hello_timeout_s
                    await self._refuse(
                        connection, "hello_timeout", f"no hello within {seconds:g} s"
                    )
                    return
            try:
                message = await ws.receive(timeout=timeout)
            except TimeoutError:
                continue
            if message.type in _ENDED:
                return
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                await self._on_message(connection, message)
            except ProtocolError as error:
                self.services.metrics.errors.labels(error.code).inc()
                await connection.sink.send_event(ErrorEvent(code=error.code, message=error.message))
            session = connection.session
            if connection.sink.gone or (session is not None and session.closed.is_set()):
                return

    async def _on_message(self, connection: _Connection, message: WSMessage) -> None:
        data = message.data
        size = len(data) if isinstance(data, bytes) else _utf8_length(data)
        limit = self.http.max_message_bytes
        if size > limit:
            raise ProtocolError("message_too_large", f"message of {size} bytes exceeds {limit}")
        session = connection.session
        if message.type is WSMsgType.BINARY:
            if session is None:
                raise ProtocolError("hello_required", "send hello before audio")
            await session.push_audio(data)
            return
        control = client_message_from_json(data)
        if session is None:
            if not isinstance(control, Hello):
                raise ProtocolError(
                    "hello_required", f"the first message must be hello, not {control.type}"
                )
            await self._open(connection, control)
            return
        if isinstance(control, SpeakText):
            self._check_text(connection, control.text)
            await dispatch_control(session, control)
            connection.text_chars += len(control.text)
            return
        await dispatch_control(session, control)

    def _check_text(self, connection: _Connection, text: str) -> None:
        per_message = self.http.max_text_chars
        if len(text) > per_message:
            raise ProtocolError(
                "text_too_long", f"text of {len(text)} characters exceeds {per_message}"
            )
        per_session = self.http.max_session_text_chars
        if connection.text_chars + len(text) > per_session:
            raise ProtocolError(
                "text_too_long",
                f"this session's text would exceed {per_session} characters "
                f"({connection.text_chars} sent)",
            )

    async def _open(self, connection: _Connection, hello: Hello) -> None:
        refused = self.token is not None and not self.token.matches(hello.token)
        if refused and not connection.authenticated:
            why = "a wrong token" if hello.token else "no token"
            log.info("refused a session from %s: %s", connection.address, why)
            await self._refuse(
                connection,
                "unauthorized",
                "hello.token (or an Authorization: Bearer header) must be http.auth_token",
            )
            return
        session_id = uuid.uuid4().hex[:16]
        try:
            session = TurnController(
                session_id,
                hello,
                self.services,
                self.new_responder(),
                connection.sink,
                transport="websocket",
            )
        except ToolDeclarationError as error:
            raise ProtocolError("bad_tools", str(error)) from None
        connection.session = session
        self.sessions[session_id] = session
        await connection.sink.send_event(
            Ready(
                session_id=session_id,
                input_sample_rate=hello.sample_rate,
                echo_cancellation=session.echo is not None,
            )
        )
        await session.start()


def _utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8 (the wire size), without encoding short ASCII-sized text."""
    return len(text.encode("utf-8")) if not text.isascii() else len(text)
