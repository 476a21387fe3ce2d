"""The Wyoming endpoint (Home Assistant's protocol; docs/wyoming.md) over the process's shared
Services: `describe` lists the fleet's public voices and the ASR model; `synthesize` and the
streaming `synthesize-start` / `-chunk` / `-stop` speak through the router and the workers
(audio chunks leave as the fleet's frames arrive); `transcribe` + `audio-start` / `-chunk` /
`-stop` go to ASRService.

Wyoming has no authentication: bind it to a trusted network, and name the clients in
`allowed_addresses` (others are closed at once). Bad input gets an `error` event with a stable
code and the connection goes on, except where the stream can no longer be followed (an
oversized event, an unreadable length): then the error is sent and the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import ipaddress
import logging
from urllib.parse import urlsplit

from faster_whisper.tokenizer import _LANGUAGE_CODES
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
)

from voicefleet.fleet.errors import NoWorkerAvailable
from voicefleet.orchestrator.config import WyomingConfig
from voicefleet.orchestrator.services import Services
from voicefleet.orchestrator.transports.admission import AllowedAddresses
from voicefleet.orchestrator.transports.wyoming_audio import Listening
from voicefleet.orchestrator.transports.wyoming_events import (
    WyomingError,
    asr_languages,
    describe,
    read_event,
)
from voicefleet.orchestrator.transports.wyoming_speech import Speech

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0  # connections still running this long after stop() are cancelled
LINGER_S = 1.0  # after a fatal error, the client's bytes are dropped this long, then closed


class WyomingServer:
    """The Wyoming listener: one WyomingConnection per client, on the shared Services."""

    def __init__(self, config: WyomingConfig, services: Services) -> None:
        self.config = config
        self.services = services
        self.allowed = AllowedAddresses(config.allowed_addresses)
        self.version = importlib.metadata.version("voicefleet")
        self.asr_languages = asr_languages(services.asr.config, _LANGUAGE_CODES)
        self.connections: set[asyncio.Task[None]] = set()
        self._server: AsyncServer | None = None

    async def start(self) -> None:
        """Listen on config.uri (OSError when it cannot be bound)."""
        server = AsyncServer.from_uri(self.config.uri)
        await server.start(lambda reader, writer: WyomingConnection(reader, writer, self))
        self._server = server
        allowed = ", ".join(self.config.allowed_addresses) or "any address"
        log.info("Wyoming endpoint listening on %s (clients: %s)", self.config.uri, allowed)
        if not self.config.allowed_addresses and not _is_local(self.config.uri):
            log.warning(
                "Wyoming has no authentication and transport.wyoming.allowed_addresses is "
                "empty: anyone who reaches %s can use the fleet and the ASR",
                self.config.uri,
            )

    async def stop(self) -> None:
        """Stop listening and end every connection (replies stop, worker sessions end)."""
        if self._server is not None:
            await self._server.stop()
            self._server = None
        pending = set(self.connections)
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def info(self) -> Info:
        """What `describe` answers now: the routable workers' voices and the ASR model."""
        try:
            workers = self.services.router.candidates()
        except NoWorkerAvailable:
            workers = []
        return describe(workers, self.services.asr.config, self.asr_languages, self.version)


def _is_local(uri: str) -> bool:
    parts = urlsplit(uri)
    if parts.scheme == "unix":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.hostname == "localhost"


# Event types that start a request, as counted in voicefleet_wyoming_requests_total.
_REQUESTS = {
    "describe": "describe",
    "synthesize": "synthesize",
    "synthesize-start": "synthesize_stream",
    "transcribe": "transcribe",
}


class WyomingConnection(AsyncEventHandler):
    """One client: requests served one at a time, except that a text stream's audio flows out
    while its chunks still come in."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: WyomingServer
    ) -> None:
        super().__init__(reader, writer)
        self.server = server
        self.config = server.config
        self.services = server.services
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.speech = Speech(self.config, self.services, self.write_event)
        self.listening = Listening(self.services.asr, self.config.max_audio_s)

    async def run(self) -> None:
        """Admit the client (or close at once), then serve its events until it leaves."""
        if self.peer and not self.server.allowed.allows(self.peer):
            log.warning("Wyoming: refused %s (not in allowed_addresses)", self.peer)
            self.services.metrics.wyoming_errors.labels("not_allowed").inc()
            self.writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self.server.connections) >= self.config.max_connections:
                message = f"{self.config.max_connections} connections are open; try again later"
                self.services.metrics.wyoming_errors.labels("too_many_connections").inc()
                await self.write_event(WyomingError("too_many_connections", message).event())
                return
            self.server.connections.add(task)
            await self._serve()
        except (ConnectionError, OSError):
            log.debug("Wyoming: %s went away", self.peer or "a client")
        except Exception:
            log.exception("Wyoming: unexpected error serving %s", self.peer or "a client")
            with contextlib.suppress(Exception):
                failed = WyomingError("internal_error", "the server failed on this request")
                await self.write_event(failed.event())
        finally:
            self.server.connections.discard(task)
            await self.speech.close()
            self.writer.close()

    async def _serve(self) -> None:
        idle_s = self.config.idle_timeout_s
        while True:
            try:
                try:
                    async with asyncio.timeout(idle_s):
                        event = await read_event(self.reader, self.config.max_event_bytes)
                except TimeoutError:
                    log.info("Wyoming: closing %s: no event for %g s", self.peer, idle_s)
                    return
                if event is None:
                    return
                await self.handle_event(event)
            except WyomingError as error:
                self.services.metrics.wyoming_errors.labels(error.code).inc()
                await self.write_event(error.event())
                if error.fatal:
                    await self._linger()
                    return

    async def _linger(self) -> None:
        """Before closing on a fatal error: end our side and drop what the client still sends
        for a moment, so that the error reaches it (closing on unread bytes resets the
        connection, and a reset can overtake the error)."""
        if self.writer.can_write_eof():
            self.writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(LINGER_S):
                while await self.reader.read(64 * 1024):
                    pass

    async def handle_event(self, event: Event) -> bool:
        """Serve one event (WyomingError for a request refused); unknown types are dropped, as
        the protocol asks of servers."""
        kind = event.type
        request = _REQUESTS.get(kind)
        if request is not None and not (request == "synthesize" and self.speech.streaming):
            self.services.metrics.wyoming_requests.labels(request).inc()
        if Describe.is_type(kind):
            await self.write_event(self.server.info().event())
        elif Ping.is_type(kind):
            text = event.data.get("text")
            await self.write_event(Pong(text=text if isinstance(text, str) else None).event())
        elif Synthesize.is_type(kind):
            # Beside a stream it repeats the stream's text for servers without streaming.
            if not self.speech.streaming:
                await self.speech.synthesize(event)
        elif SynthesizeStart.is_type(kind):
            self.speech.start(event)
        elif SynthesizeChunk.is_type(kind):
            await self.speech.chunk(event)
        elif SynthesizeStop.is_type(kind):
            await self.speech.stop()
        elif Transcribe.is_type(kind):
            self.listening.transcribe(event)
        elif AudioStart.is_type(kind):
            self.listening.start(event)
        elif AudioChunk.is_type(kind):
            self.listening.chunk(event)
        elif AudioStop.is_type(kind):
            transcript = await self.listening.stop()
            if transcript is not None:
                await self.write_event(transcript)
        else:
            log.debug("Wyoming: dropping a %r event", kind)
        return True
