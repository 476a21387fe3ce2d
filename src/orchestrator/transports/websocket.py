"""The WebSocket transport (`/ws`): JSON control and events, binary PCM both ways.

Bad input gets an `error` event with a stable code and the session goes on where it can:
binary before hello, odd-length PCM, oversized messages, unknown types, bad JSON. Only a
refused hello (auth, capacity) or a broken connection ends it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from aiohttp import WSMsgType, web

from voicefleet.orchestrator.controller import TurnController
from voicefleet.orchestrator.protocol import (
    ErrorEvent,
    Hello,
    ProtocolError,
    Ready,
    ServerMessage,
    client_message_from_json,
    dispatch_control,
    to_json,
)
from voicefleet.orchestrator.responder import Responder
from voicefleet.orchestrator.services import Services

log = logging.getLogger(__name__)

# aiohttp drops the connection above its own limit; ours is enforced below it, per message,
# so an oversized message is an error event and the session survives.
_HARD_LIMIT_FACTOR = 16


class WebSocketSink:
    """Sends a session's output over one WebSocket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def send_event(self, message: ServerMessage) -> None:
        """One JSON text frame (dropped silently once the socket is closed)."""
        if not self.ws.closed:
            await self.ws.send_str(to_json(message))

    async def send_audio(self, pcm: bytes) -> None:
        """One binary frame."""
        if not self.ws.closed:
            await self.ws.send_bytes(pcm)

    async def close(self, reason: str) -> None:
        """Close the socket."""
        if not self.ws.closed:
            await self.ws.close(message=reason.encode()[:120])


class WebSocketTransport:
    """The aiohttp handler for `/ws`."""

    def __init__(
        self,
        services: Services,
        new_responder: Callable[[], Responder],
        *,
        max_message_bytes: int,
        max_sessions: int,
        auth_token: str | None,
    ) -> None:
        self.services = services
        self.new_responder = new_responder
        self.max_message_bytes = max_message_bytes
        self.max_sessions = max_sessions
        self.auth_token = auth_token
        self.sessions: dict[str, TurnController] = {}

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one connection until bye, hang-up or a fatal error."""
        ws = web.WebSocketResponse(
            max_msg_size=self.max_message_bytes * _HARD_LIMIT_FACTOR, heartbeat=30.0
        )
        await ws.prepare(request)
        sink = WebSocketSink(ws)
        session: TurnController | None = None
        try:
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                data = message.data
                try:
                    if len(data) > self.max_message_bytes:
                        raise ProtocolError(
                            "message_too_large",
                            f"message of {len(data)} bytes exceeds {self.max_message_bytes}",
                        )
                    if message.type is WSMsgType.BINARY:
                        if session is None:
                            raise ProtocolError("hello_required", "send hello before audio")
                        await session.push_audio(data)
                        continue
                    session = await self._control(data, session, sink)
                except ProtocolError as error:
                    self.services.metrics.errors.labels(error.code).inc()
                    await sink.send_event(ErrorEvent(code=error.code, message=error.message))
                if session is not None and session.closed.is_set():
                    break
        finally:
            if session is not None:
                await session.close("disconnected")
                self.sessions.pop(session.id, None)
        return ws

    async def _control(
        self, text: str, session: TurnController | None, sink: WebSocketSink
    ) -> TurnController | None:
        message = client_message_from_json(text)
        if session is None:
            if not isinstance(message, Hello):
                raise ProtocolError(
                    "hello_required", f"the first message must be hello, not {message.type}"
                )
            return await self._open(message, sink)
        await dispatch_control(session, message)
        return session

    async def _open(self, hello: Hello, sink: WebSocketSink) -> TurnController | None:
        if self.auth_token and hello.token != self.auth_token:
            await sink.send_event(
                ErrorEvent(code="unauthorized", message="bad or missing token", fatal=True)
            )
            await sink.close("unauthorized")
            return None
        if len(self.sessions) >= self.max_sessions:
            await sink.send_event(
                ErrorEvent(
                    code="too_many_sessions",
                    message=f"this orchestrator is at max_sessions={self.max_sessions}",
                    fatal=True,
                )
            )
            await sink.close("too_many_sessions")
            return None
        session_id = uuid.uuid4().hex[:16]
        session = TurnController(
            session_id, hello, self.services, self.new_responder(), sink, transport="websocket"
        )
        self.sessions[session_id] = session
        await sink.send_event(Ready(session_id=session_id, input_sample_rate=hello.sample_rate))
        await session.start()
        return session
