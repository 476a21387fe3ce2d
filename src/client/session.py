"""One client session with the orchestrator: it owns the WebSocket and collects what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

from voicefleet.audio.format import FRAME_BYTES
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioStart,
    Bye,
    ErrorEvent,
    Hello,
    Interrupt,
    ProtocolError,
    Ready,
    ServerMessage,
    SpeakText,
    server_message_from_json,
    to_json,
)
from voicefleet.orchestrator.protocol_tools import ToolRequest, ToolResponse

EventHandler = Callable[[ServerMessage], None]
ProblemHandler = Callable[[str], None]
ToolAnswerer = Callable[[ToolRequest], tuple[Any, str]]  # -> (result, error)

CONNECT_TIMEOUT_S = 10.0
REPLY_SETTLE_S = 1.0


class ClientConnectError(Exception):
    """The session could not be opened: no connection, no `ready`, or a fatal error first."""


@dataclass(frozen=True)
class ReceivedEvent:
    """A server message and when it arrived (`time.monotonic()`)."""

    at: float
    message: ServerMessage


@dataclass
class ClientResult:
    """Everything a session received, and how it ended (exit code 0 when the reply came)."""

    exit_code: int
    frames: list[bytes] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    events: list[ReceivedEvent] = field(default_factory=list)
    ready: Ready | None = None
    error: str | None = None
    protocol_errors: int = 0
    input_started_at: float | None = None

    @property
    def audio(self) -> bytes:
        """The received 48 kHz PCM16 mono frames, concatenated."""
        return b"".join(self.frames)


class ClientInput(Protocol):
    """Something the client sends after `ready`: a paced WAV, a text, a live microphone."""

    async def send(self, session: ClientSession) -> None:
        """Send it all; return early once `session.finished`."""


class ClientSession:
    """The WebSocket to `/ws`: hello/ready, sending input, and a receiver that records events."""

    def __init__(
        self,
        url: str,
        hello: Hello,
        *,
        on_event: EventHandler | None = None,
        on_problem: ProblemHandler | None = None,
        answer_tool: ToolAnswerer | None = None,
    ) -> None:
        self.url = url
        self.hello = hello
        self.result = ClientResult(exit_code=1)
        self.failure: str | None = None
        self._on_event = on_event
        self._on_problem = on_problem
        self._answer_tool = answer_tool
        self._answering: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._reply_turns: set[int] = set()
        self._reply_done = False
        self._last_audio_at = 0.0
        self._bad_frames = 0

    @property
    def finished(self) -> bool:
        """True once the server failed the session or the connection is gone."""
        return self.failure is not None or self._ws is None or self._ws.closed

    async def open(self, within_s: float = CONNECT_TIMEOUT_S) -> Ready:
        """Connect, send `hello`, and wait for `ready`."""
        self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(within_s):
                self._ws = await self._http.ws_connect(self.url)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            await self._http.close()
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ClientConnectError(f"cannot connect to {self.url}: {reason}") from None
        self._receiver = asyncio.create_task(self._receive(self._ws))
        await self._send(to_json(self.hello))
        try:
            async with asyncio.timeout(within_s):
                while self.result.ready is None and not self.finished:
                    await self._next_change()
        except TimeoutError:
            self.failure = f"no ready from {self.url} within {within_s:g} s"
        if self.result.ready is None:
            await self.close()
            raise ClientConnectError(self.failure or f"{self.url} closed before ready")
        return self.result.ready

    def mark_input_start(self) -> None:
        """Replies whose audio starts from now on count as replies to the input."""
        self.result.input_started_at = time.monotonic()

    async def send_audio(self, pcm: bytes) -> None:
        """Send one chunk of PCM16 mono at the rate declared in `hello`."""
        await self._send(pcm)

    async def send_text(self, text: str, mode: Literal["answer", "say"] = "answer") -> None:
        """Send a `text` message."""
        await self._send(to_json(SpeakText(text=text, mode=mode)))

    async def interrupt(self) -> None:
        """Ask the agent to stop talking."""
        await self._send(to_json(Interrupt()))

    async def send_tool_response(self, request_id: str, result: Any, error: str = "") -> None:
        """Answer a `tool_request`: its result, or why there is none."""
        await self._send(to_json(ToolResponse(request_id=request_id, result=result, error=error)))

    async def wait_reply(self, within_s: float, settle_s: float = REPLY_SETTLE_S) -> bool:
        """Wait until a reply to the input has ended and no audio followed for `settle_s`."""
        deadline = time.monotonic() + within_s
        while not self.finished:
            now = time.monotonic()
            quiet_for = now - self._last_audio_at
            if self._reply_done and quiet_for >= settle_s:
                return True
            wait = deadline - now
            if wait <= 0:
                return False
            if self._reply_done:
                wait = min(wait, settle_s - quiet_for)
            try:
                async with asyncio.timeout(wait):
                    await self._next_change()
            except TimeoutError:
                pass
        return False

    async def close(self) -> None:
        """Say `bye`, close the WebSocket, and stop the receiver."""
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.send_str(to_json(Bye()))
                await self._ws.close()
            except (aiohttp.ClientError, ConnectionError):
                pass
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _send(self, data: str | bytes) -> None:
        if self.finished or self._ws is None:
            return
        try:
            if isinstance(data, bytes):
                await self._ws.send_bytes(data)
            else:
                await self._ws.send_str(data)
        except (aiohttp.ClientError, ConnectionError) as error:
            self._fail(f"connection lost while sending: {error}")

    async def _next_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self._changed.set()

    def _problem(self, description: str) -> None:
        self.result.protocol_errors += 1
        if self._on_problem is not None:
            self._on_problem(description)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self._on_frame(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                try:
                    self._on_message(server_message_from_json(message.data))
                except ProtocolError as error:
                    self._problem(f"bad message from the server ({error.code}): {error.message}")
            self._changed.set()
        if not self._closing:
            self._fail(f"{self.url} closed the connection")
        self._changed.set()

    def _on_frame(self, frame: bytes) -> None:
        if len(frame) != FRAME_BYTES:
            self._bad_frames += 1
            # Reported once: a server that gets framing wrong gets it wrong on every frame.
            if self._bad_frames == 1:
                self._problem(f"binary frame of {len(frame)} bytes (expected {FRAME_BYTES})")
            else:
                self.result.protocol_errors += 1
            return
        now = time.monotonic()
        self._last_audio_at = now
        self.result.frames.append(frame)
        self.result.frame_times.append(now)

    def _on_message(self, message: ServerMessage) -> None:
        now = time.monotonic()
        self.result.events.append(ReceivedEvent(at=now, message=message))
        started = self.result.input_started_at
        if isinstance(message, Ready):
            self.result.ready = message
        elif isinstance(message, AudioStart):
            self._last_audio_at = now
            if started is not None:
                self._reply_turns.add(message.turn)
                self._reply_done = False
        elif isinstance(message, AudioEnd | AudioCancel):
            self._last_audio_at = now
            if message.turn in self._reply_turns:
                self._reply_done = True
        elif isinstance(message, ErrorEvent) and message.fatal:
            self._fail(f"{message.code}: {message.message}")
        elif isinstance(message, ToolRequest) and self._answer_tool is not None:
            result, error = self._answer_tool(message)
            task = asyncio.create_task(self.send_tool_response(message.request_id, result, error))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        if self._on_event is not None:
            self._on_event(message)


async def run_session(
    url: str,
    hello: Hello,
    inputs: Sequence[ClientInput],
    *,
    reply_within_s: float = 30.0,
    wait_for_reply: bool = True,
    on_event: EventHandler | None = None,
    on_problem: ProblemHandler | None = None,
    answer_tool: ToolAnswerer | None = None,
) -> ClientResult:
    """Open a session, send the inputs, wait for the reply, say bye: what tests and benches call."""
    session = ClientSession(
        url, hello, on_event=on_event, on_problem=on_problem, answer_tool=answer_tool
    )
    try:
        await session.open()
    except ClientConnectError as connect_error:
        session.result.error = str(connect_error)
        return session.result
    error: str | None = None
    try:
        session.mark_input_start()
        for item in inputs:
            await item.send(session)
        if wait_for_reply and not await session.wait_reply(reply_within_s):
            error = session.failure or f"no reply within {reply_within_s:g} s"
        else:
            error = session.failure
    finally:
        await session.close()
    session.result.error = error
    session.result.exit_code = 0 if error is None else 1
    return session.result
