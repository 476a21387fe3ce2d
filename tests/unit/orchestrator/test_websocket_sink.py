"""The WebSocket sink against a client that stops reading (real sockets, small buffers): the
server's memory stays bounded (sends block, nothing queues in Python), and after the send
timeout the client is dropped, so it cannot hold its session and worker stream forever."""

from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web
from aiohttp.test_utils import TestServer

from voicefleet.orchestrator.transports.websocket_sink import WebSocketSink

FRAME = bytes(1920)
SEND_TIMEOUT_S = 0.5


async def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    outcome: asyncio.Future[tuple[int, float, bool]] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        assert request.transport is not None
        request.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 8192
        )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sink = WebSocketSink(ws, request.transport, send_timeout_s=SEND_TIMEOUT_S)
        sent = 0
        blocked_at = time.monotonic()
        while not sink.gone and sent < 50_000_000:
            blocked_at = time.monotonic()
            await sink.send_audio(FRAME)
            sent += len(FRAME)
        stalled = time.monotonic() - blocked_at
        await sink.send_audio(FRAME)  # dropped: no error once the client is gone
        outcome.set_result((sent, stalled, sink.gone))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", server.port))
            request = (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await asyncio.get_running_loop().sock_sendall(client, request.encode())
            # ... and never read.
            sent, stalled, gone = await asyncio.wait_for(outcome, 20)
        finally:
            client.close()
    assert gone
    assert sent < 8_000_000, f"{sent} bytes went into buffers for a client that reads nothing"
    assert stalled >= SEND_TIMEOUT_S * 0.9
