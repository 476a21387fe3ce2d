"""The WebSocket side of a session's output: JSON events and binary frames to one socket, a
close code that says why it ended, and a bound on how long a client may stall either."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, web

from voicefleet.orchestrator.protocol import ServerMessage, to_json

log = logging.getLogger(__name__)

# A client that takes longer than this to take a message (it stopped reading) or to answer our
# close is dropped, so it cannot hold a connection, a session and a worker stream forever.
SEND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0

_CLOSE_CODES: dict[str, int] = {
    "shutdown": WSCloseCode.GOING_AWAY,
    "too_many_sessions": WSCloseCode.TRY_AGAIN_LATER,
    "unauthorized": WSCloseCode.POLICY_VIOLATION,
    "hello_timeout": WSCloseCode.POLICY_VIOLATION,
}


class WebSocketSink:
    """Sends a session's output over one WebSocket; once the client is gone, sends are dropped."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.send_timeout_s = send_timeout_s
        self._gone = False

    @property
    def gone(self) -> bool:
        """True once the socket is closed, broken or dropped for not reading."""
        return self._gone or self.ws.closed

    async def send_event(self, message: ServerMessage) -> None:
        """One JSON text frame."""
        await self._send(to_json(message))

    async def send_audio(self, pcm: bytes) -> None:
        """One binary frame."""
        await self._send(pcm)

    async def close(self, reason: str) -> None:
        """Close the socket, with a close code that says why (docs/protocol.md)."""
        if self.gone:
            return
        code = _CLOSE_CODES.get(reason, WSCloseCode.OK)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:
            self._drop("did not answer the close")

    async def _send(self, data: str | bytes) -> None:
        if self.gone:
            return
        try:
            async with asyncio.timeout(self.send_timeout_s):
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(data)
        except TimeoutError:
            self._drop(f"took no data for {self.send_timeout_s:g} s")
        except ConnectionError:
            self._gone = True  # the client left; the receive loop ends the session

    def _drop(self, why: str) -> None:
        log.info("dropping a WebSocket client that %s", why)
        self._gone = True
        if self.transport is not None:
            self.transport.abort()
