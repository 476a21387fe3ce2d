"""Hostile and careless clients against a real orchestrator process (docs/security.md,
"Orchestrator (HTTP/WebSocket)"): nobody gets in without the token, and no single client can
take what the others need (capacity, memory, the socket) or end anyone else's session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import Stack, open_session, wait_for_event
from tests.worker_process import OrchestratorProcess, WorkerProcess
from voicefleet.orchestrator.protocol import ErrorEvent, StateChanged
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import TTSClient

TOKEN = "integration-token-5f0c2a9e"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
LISTED_ORIGIN = "https://app.example.test"
# Small limits where a test needs to reach them; message sizes keep their defaults
# (256 KiB answered with message_too_large, 8 MiB hard cap).
GUARDED = {
    "auth_token": TOKEN,
    "hello_timeout_s": 1.5,
    "max_sessions": 3,
    "max_text_chars": 60,
    "max_session_text_chars": 100,
    "allowed_origins": [LISTED_ORIGIN],
}
HELLO = {"type": "hello", "sample_rate": 16000}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """One Piper worker and an orchestrator with a token and small limits."""
    built = Stack(tmp_path_factory.mktemp("security"), redis_url)
    try:
        built.worker()
        built.orchestrator(http=GUARDED)
        yield built
    finally:
        built.stop()


@pytest.fixture
def guarded(stack: Stack) -> OrchestratorProcess:
    return stack.orchestrators[0]


class Socket:
    """A raw WebSocket to /ws: what it is sent, what comes back, how it closed."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next_event(self, within_s: float = 10.0) -> dict[str, Any]:
        """The next JSON message (binary frames skipped)."""
        while True:
            message = await self.ws.receive(timeout=within_s)
            if message.type is aiohttp.WSMsgType.TEXT:
                data: dict[str, Any] = json.loads(message.data)
                return data
            assert message.type is aiohttp.WSMsgType.BINARY, (message.type, message.data)

    async def expect(self, kind: str, within_s: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Skip events until one of `kind`; it must have `fields`."""
        while True:
            event = await self.next_event(within_s)
            if event["type"] == kind:
                assert {k: event.get(k) for k in fields} == fields, event
                return event

    async def expect_error(self, code: str, fatal: bool = False) -> dict[str, Any]:
        event = await self.expect("error", code=code, fatal=fatal)
        assert event["message"]
        return event

    async def open(self, **hello: Any) -> dict[str, Any]:
        await self.send({**HELLO, **hello})
        return await self.expect("ready")

    async def closed_with(self, within_s: float = 10.0) -> int | None:
        """Read until the server closes; the code in its close frame."""
        while True:
            message = await self.ws.receive(timeout=within_s)
            if message.type is aiohttp.WSMsgType.CLOSE:
                return int(message.data)
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return self.ws.close_code

    async def speaks(self, text: str, within_s: float = 30.0) -> int:
        """A `say` turn: the number of audio frames until audio_end."""
        await self.send({"type": "text", "text": text, "mode": "say"})
        frames = 0
        while True:
            message = await self.ws.receive(timeout=within_s)
            if message.type is aiohttp.WSMsgType.BINARY:
                frames += 1
            elif message.type is aiohttp.WSMsgType.TEXT:
                event = json.loads(message.data)
                assert event["type"] != "error", event
                if event["type"] == "audio_end":
                    return frames
            else:
                raise AssertionError(f"socket ended: {message.type} {message.data}")


@asynccontextmanager
async def connect(
    orchestrator: OrchestratorProcess, headers: dict[str, str] | None = None
) -> AsyncIterator[Socket]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(orchestrator.ws_url, headers=headers) as ws,
    ):
        yield Socket(ws)


async def handshake_status(orchestrator: OrchestratorProcess, headers: dict[str, str]) -> int:
    """The HTTP status of a refused upgrade."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with connect(orchestrator, headers):
            pass
    return refused.value.status


def open_fds(orchestrator: OrchestratorProcess) -> int:
    assert orchestrator.proc is not None
    return len(os.listdir(f"/proc/{orchestrator.proc.pid}/fd"))


# -- who gets in ---------------------------------------------------------------------------


async def test_ws_needs_the_token_in_hello_or_a_bearer_header(guarded: OrchestratorProcess) -> None:
    for hello in ({}, {"token": "wrong"}):
        async with connect(guarded) as sock:
            await sock.send({**HELLO, **hello})
            await sock.expect_error("unauthorized", fatal=True)
            assert await sock.closed_with() == aiohttp.WSCloseCode.POLICY_VIOLATION
    async with connect(guarded) as sock:
        await sock.open(token=TOKEN)
    async with connect(guarded, BEARER) as sock:
        await sock.open()  # the header did it; hello has no token
    assert await handshake_status(guarded, {"Authorization": "Bearer wrong"}) == 401
    assert TOKEN not in guarded.log()


async def test_http_routes_need_the_token_except_health_and_metrics(
    guarded: OrchestratorProcess,
) -> None:
    status, body = guarded.get("/token?room=demo&identity=alice")
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    async with (
        aiohttp.ClientSession(headers=BEARER) as http,
        http.get(guarded.url + "/token?room=demo&identity=alice") as reply,
    ):
        # Past the token, /token does its own job: no LiveKit keys here.
        assert reply.status == 404 and (await reply.json())["error"] == "livekit_disabled"
    for path in ("/healthz", "/readyz", "/metrics", "/"):
        assert guarded.get(path)[0] == 200, path


async def test_metrics_need_the_token_with_metrics_auth(stack: Stack) -> None:
    strict = stack.orchestrator(
        require_ready=False, http={"auth_token": TOKEN, "metrics_auth": True}
    )
    status, body = strict.get("/metrics")
    assert status == 401 and json.loads(body)["error"] == "unauthorized"
    async with (
        aiohttp.ClientSession(headers=BEARER) as http,
        http.get(strict.url + "/metrics") as reply,
    ):
        assert reply.status == 200 and "voicefleet_sessions_active" in await reply.text()
    assert strict.get("/healthz")[0] == 200
    strict.stop()


async def test_only_the_own_host_listed_origins_and_non_browsers_may_connect(
    guarded: OrchestratorProcess,
) -> None:
    for origin in ("http://evil.example", f"http://127.0.0.1:{guarded.port + 1}", "null"):
        assert await handshake_status(guarded, {"Origin": origin}) == 403, origin
    for headers in ({"Origin": f"http://127.0.0.1:{guarded.port}"}, {"Origin": LISTED_ORIGIN}, {}):
        async with connect(guarded, headers) as sock:
            await sock.open(token=TOKEN)


async def test_connections_per_address_are_rate_limited(stack: Stack) -> None:
    limited = stack.orchestrator(require_ready=False, http={"connections_per_ip_per_minute": 3})
    for _ in range(3):
        async with connect(limited) as sock:
            await sock.open()
    assert await handshake_status(limited, {}) == 429
    status, body = limited.get("/ws")
    assert status == 429 and json.loads(body)["error"] == "rate_limited"
    assert limited.get("/healthz")[0] == 200, "only /ws upgrades are rate limited"
    limited.stop()


# -- capacity --------------------------------------------------------------------------------


async def test_hello_must_come_in_time(guarded: OrchestratorProcess) -> None:
    async with connect(guarded) as sock:
        # Errors before hello do not buy time.
        await sock.ws.send_str("{not json")
        await sock.expect_error("bad_json")
        await sock.expect_error("hello_timeout", fatal=True)
        assert await sock.closed_with() == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_connections_without_hello_count_toward_max_sessions_and_are_released(
    guarded: OrchestratorProcess,
) -> None:
    before = open_fds(guarded)
    async with aiohttp.ClientSession() as http:
        idle = [await http.ws_connect(guarded.ws_url) for _ in range(3)]
        ready = json.loads(guarded.get("/readyz")[1])
        assert ready["connections"] == 3 and ready["sessions"] == 0
        one_more = Socket(await http.ws_connect(guarded.ws_url))
        await one_more.expect_error("too_many_sessions", fatal=True)
        assert await one_more.closed_with() == aiohttp.WSCloseCode.TRY_AGAIN_LATER
        for ws in idle:
            await Socket(ws).expect_error("hello_timeout", fatal=True)
            await ws.close()
    # Every socket and descriptor is given back: a session opens again.
    async with connect(guarded) as sock:
        await sock.open(token=TOKEN)
    for _ in range(50):
        if open_fds(guarded) <= before:
            break
        await asyncio.sleep(0.1)
    assert open_fds(guarded) <= before
    assert json.loads(guarded.get("/readyz")[1])["connections"] == 0


# -- what a session may send ------------------------------------------------------------------


async def test_an_oversized_message_is_an_error_up_to_the_cap_and_closes_above_it(
    guarded: OrchestratorProcess,
) -> None:
    async with connect(guarded) as sock:
        await sock.open(token=TOKEN)
        await sock.ws.send_bytes(bytes(5_000_000))
        await sock.expect_error("message_too_large")
        await sock.ws.send_str(json.dumps({"type": "text", "text": "x" * 300_000}))
        await sock.expect_error("message_too_large")
        assert await sock.speaks("Still here.") > 10
        # Above the hard cap (8 MiB) the socket is closed: 1009, as documented.
        # The server may stop reading while the rest is still on its way.
        with contextlib.suppress(ConnectionError):
            await sock.ws.send_bytes(bytes(9 * 1024 * 1024))
        assert await sock.closed_with() == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_too_much_text_is_refused_per_message_and_per_session(
    guarded: OrchestratorProcess,
) -> None:
    async with connect(guarded) as sock:
        await sock.open(token=TOKEN)
        await sock.send({"type": "text", "text": "a" * 61, "mode": "say"})
        await sock.expect_error("text_too_long")
        assert await sock.speaks("Fifty characters of text, more or less, said here.") > 10
        assert await sock.speaks("And another turn that fits under the limit.") > 10
        await sock.send({"type": "text", "text": "And one more.", "mode": "say"})
        await sock.expect_error("text_too_long")
        # The session is still there.
        await sock.send(HELLO)
        await sock.expect_error("already_started")


# -- shutdown ----------------------------------------------------------------------------------


async def active_sessions(worker: WorkerProcess) -> int:
    async with TTSClient(worker.address) as client:
        caps = await client.stub.GetCapabilities(tts_pb2.GetCapabilitiesRequest())
        return int(caps.active_sessions)


async def test_sigterm_tells_every_client_ends_the_sessions_and_exits_0(stack: Stack) -> None:
    orchestrator = stack.orchestrator()
    worker = stack.workers[0]
    session, events = await open_session(orchestrator.ws_url)
    session.mark_input_start()
    await session.send_text("This reply is still being spoken when the orchestrator stops.", "say")
    await wait_for_event(events, lambda e: e.type == "audio_start", 30)
    assert await active_sessions(worker) >= 1
    async with connect(orchestrator) as waiting:  # no hello yet
        assert orchestrator.proc is not None
        orchestrator.proc.send_signal(signal.SIGTERM)
        await waiting.expect_error("shutdown", fatal=True)
        assert await waiting.closed_with() == aiohttp.WSCloseCode.GOING_AWAY
    error = await wait_for_event(events, lambda e: isinstance(e, ErrorEvent), 10)
    assert isinstance(error, ErrorEvent) and error.code == "shutdown" and error.fatal
    await wait_for_event(
        events, lambda e: isinstance(e, StateChanged) and e.state == "terminated", 10
    )
    assert await asyncio.to_thread(orchestrator.proc.wait, 30) == 0
    await session.close()
    for _ in range(50):
        if await active_sessions(worker) == 0:
            break
        await asyncio.sleep(0.1)
    assert await active_sessions(worker) == 0, "the orchestrator ended its worker session"
