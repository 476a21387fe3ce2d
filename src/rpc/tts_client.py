"""A thin async client for one worker's TTS ABI (used by the orchestrator, tests and bench)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import TypeAlias

import grpc

from voicefleet.rpc.generated import tts_pb2, tts_pb2_grpc

Command: TypeAlias = tts_pb2.ControlCommand.ValueType
PAUSE = tts_pb2.CONTROL_COMMAND_PAUSE
RESUME = tts_pb2.CONTROL_COMMAND_RESUME
STOP = tts_pb2.CONTROL_COMMAND_STOP
RELOAD = tts_pb2.CONTROL_COMMAND_RELOAD


async def text_chunks(
    session_id: str, texts: Iterable[str] | AsyncIterable[str]
) -> AsyncIterator[tts_pb2.TextChunk]:
    """Number the texts as TextChunks; the last chunk (possibly empty) ends the input."""
    sequence = 0
    if isinstance(texts, AsyncIterable):
        async for text in texts:
            yield tts_pb2.TextChunk(session_id=session_id, text=text, sequence=sequence)
            sequence += 1
    else:
        for text in texts:
            yield tts_pb2.TextChunk(session_id=session_id, text=text, sequence=sequence)
            sequence += 1
    yield tts_pb2.TextChunk(session_id=session_id, sequence=sequence, end_of_input=True)


class TTSClient:
    """One channel to one worker."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = tts_pb2_grpc.TTSStub(self.channel)

    async def __aenter__(self) -> TTSClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

    async def start_session(
        self,
        session_id: str,
        model_id: str = "",
        *,
        voice: str = "",
        language: str = "",
        options: Mapping[str, str] | None = None,
    ) -> tts_pb2.StartSessionResponse:
        """Open a session on the worker."""
        request = tts_pb2.StartSessionRequest(
            session_id=session_id,
            model_id=model_id,
            voice=voice,
            language=language,
            options=options,
        )
        return await self.stub.StartSession(request)

    async def end_session(self, session_id: str) -> tts_pb2.EndSessionResponse:
        """Close a session."""
        return await self.stub.EndSession(tts_pb2.EndSessionRequest(session_id=session_id))

    def synthesize(
        self, session_id: str, texts: Iterable[str] | AsyncIterable[str]
    ) -> grpc.aio.StreamStreamCall[tts_pb2.TextChunk, tts_pb2.AudioFrame]:
        """Stream texts in; iterate the returned call for frames."""
        return self.stub.Synthesize(text_chunks(session_id, texts))

    async def control(self, session_id: str, command: Command) -> tts_pb2.ControlResponse:
        """Send PAUSE / RESUME / STOP / RELOAD."""
        return await self.stub.Control(
            tts_pb2.ControlRequest(session_id=session_id, command=command)
        )
