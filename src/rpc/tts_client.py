"""A thin async client for one worker's TTS ABI (used by the fleet client, tests and bench)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import TypeAlias

import grpc

from voicefleet import tracing
from voicefleet.rpc.channel import Metadata, WorkerChannelConfig
from voicefleet.rpc.generated import tts_pb2, tts_pb2_grpc

Command: TypeAlias = tts_pb2.ControlCommand.ValueType
PAUSE = tts_pb2.CONTROL_COMMAND_PAUSE
RESUME = tts_pb2.CONTROL_COMMAND_RESUME
STOP = tts_pb2.CONTROL_COMMAND_STOP
RELOAD = tts_pb2.CONTROL_COMMAND_RELOAD


async def text_chunks(
    session_id: str, texts: Iterable[str] | AsyncIterable[str]
) -> AsyncIterator[tts_pb2.TextChunk]:
    """Number the texts as TextChunks and end the input: a list's last text carries
    end_of_input, an async stream gets a last, empty chunk that does."""
    sequence = 0
    if isinstance(texts, AsyncIterable):
        async for text in texts:
            yield tts_pb2.TextChunk(session_id=session_id, text=text, sequence=sequence)
            sequence += 1
    else:
        # Known in advance, so the request stream half-closes with its last text: a worker that
        # refuses the stream at once then reaches the caller with its own status (a grpc.aio
        # client still writing reports INTERNAL instead, grpc/grpc#36066).
        items = list(texts)
        for sequence, text in enumerate(items):
            last = sequence == len(items) - 1
            yield tts_pb2.TextChunk(
                session_id=session_id, text=text, sequence=sequence, end_of_input=last
            )
        if items:
            return
    yield tts_pb2.TextChunk(session_id=session_id, sequence=sequence, end_of_input=True)


class TTSClient:
    """One channel to one worker; every call carries the token, every unary call a deadline.

    `config` sets the token, TLS and default deadlines (WorkerChannelConfig); `token` overrides
    its token. Each unary method takes `timeout` (seconds; None: the config's default), so a
    hung worker raises AioRpcError DEADLINE_EXCEEDED instead of blocking. Calls made on `stub`
    directly carry neither: pass `metadata=client.metadata` and a timeout yourself.
    """

    def __init__(
        self,
        address: str,
        *,
        config: WorkerChannelConfig | None = None,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.config = config or WorkerChannelConfig()
        self.timeouts = self.config.timeouts
        self.metadata: Metadata = (
            (("authorization", f"Bearer {token}"),) if token else self.config.metadata()
        )
        self.channel = self.config.open_channel(address)
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
        unpaced: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC deadline: the worker sees it)
    ) -> tts_pb2.StartSessionResponse:
        """Open a session on the worker (default deadline: timeouts.start_session_s)."""
        request = tts_pb2.StartSessionRequest(
            session_id=session_id,
            model_id=model_id,
            voice=voice,
            language=language,
            options=options,
            unpaced=unpaced,
        )
        return await self.stub.StartSession(
            request,
            timeout=timeout or self.timeouts.start_session_s,
            metadata=tracing.inject(self.metadata),
        )

    async def end_session(
        self,
        session_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tts_pb2.EndSessionResponse:
        """Close a session (default deadline: timeouts.end_session_s)."""
        return await self.stub.EndSession(
            tts_pb2.EndSessionRequest(session_id=session_id),
            timeout=timeout or self.timeouts.end_session_s,
            metadata=self.metadata,
        )

    def synthesize(
        self,
        session_id: str,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        timeout: float | None = None,
    ) -> grpc.aio.StreamStreamCall[tts_pb2.TextChunk, tts_pb2.AudioFrame]:
        """Stream texts in; iterate the returned call for frames. No deadline unless `timeout`
        is given (a reply lasts as long as its audio): watch the frames for stalls instead."""
        return self.stub.Synthesize(
            text_chunks(session_id, texts),
            timeout=timeout,
            metadata=tracing.inject(self.metadata),  # the caller's span, when one is recording
        )

    async def control(
        self,
        session_id: str,
        command: Command,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tts_pb2.ControlResponse:
        """Send PAUSE / RESUME / STOP / RELOAD (default deadline: timeouts.control_s, or
        timeouts.reload_s for RELOAD, which reloads the model)."""
        default = self.timeouts.reload_s if command == RELOAD else self.timeouts.control_s
        return await self.stub.Control(
            tts_pb2.ControlRequest(session_id=session_id, command=command),
            timeout=timeout or default,
            metadata=self.metadata,
        )

    async def list_models(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tts_pb2.ListModelsResponse:
        """The worker's catalog with residency (default deadline: timeouts.query_s)."""
        return await self.stub.ListModels(
            tts_pb2.ListModelsRequest(),
            timeout=timeout or self.timeouts.query_s,
            metadata=self.metadata,
        )

    async def load_model(
        self,
        model_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tts_pb2.LoadModelResponse:
        """Make a model resident (default deadline: timeouts.load_model_s)."""
        return await self.stub.LoadModel(
            tts_pb2.LoadModelRequest(model_id=model_id),
            timeout=timeout or self.timeouts.load_model_s,
            metadata=self.metadata,
        )

    async def unload_model(
        self,
        model_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tts_pb2.UnloadModelResponse:
        """Unload an idle model (default deadline: timeouts.unload_model_s)."""
        return await self.stub.UnloadModel(
            tts_pb2.UnloadModelRequest(model_id=model_id),
            timeout=timeout or self.timeouts.unload_model_s,
            metadata=self.metadata,
        )

    async def get_capabilities(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tts_pb2.GetCapabilitiesResponse:
        """The worker's capability record and load (default deadline: timeouts.query_s)."""
        return await self.stub.GetCapabilities(
            tts_pb2.GetCapabilitiesRequest(),
            timeout=timeout or self.timeouts.query_s,
            metadata=self.metadata,
        )
