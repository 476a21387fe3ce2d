"""The gRPC servicer: the TTS ABI on top of sessions, streams and the model manager.

Every RPC runs inside one error boundary: a WorkerError becomes its status code with its
message; anything else is logged with a traceback and answered INTERNAL with a short message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from voicefleet import tracing
from voicefleet.audio.format import FRAME_MS, FRAME_SAMPLES, OUTPUT_SAMPLE_RATE
from voicefleet.rpc.generated import tts_pb2, tts_pb2_grpc
from voicefleet.rpc.registry import WorkerCapabilities, speaks
from voicefleet.tts.adapters import adapter_classes
from voicefleet.tts.auth import Credentials
from voicefleet.tts.errors import Draining, InvalidRequest, SessionBusy, WorkerError
from voicefleet.tts.models import ModelManager, ModelStatus
from voicefleet.tts.scheduling import DeadlineExecutor
from voicefleet.tts.session import SessionTable, WorkerSession
from voicefleet.tts.stats import WorkerStats
from voicefleet.tts.stream import StreamSettings, SynthesisStream

log = logging.getLogger(__name__)

ResponseT = TypeVar("ResponseT")

OUTPUT_FORMAT = tts_pb2.AudioFormat(
    sample_rate=OUTPUT_SAMPLE_RATE,
    channels=1,
    frame_samples=FRAME_SAMPLES,
    frame_ms=FRAME_MS,
    encoding=tts_pb2.AUDIO_ENCODING_PCM_S16LE,
)


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: Exception, rpc: str, stats: WorkerStats
) -> None:
    if isinstance(error, WorkerError):
        log.info("%s: %s: %s", rpc, error.status.name, error)
        stats.metrics.error(rpc, error.status)
        await context.abort(error.status, str(error))
    log.exception("%s failed", rpc)
    stats.metrics.error(rpc, grpc.StatusCode.INTERNAL)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"{rpc} failed: internal error ({type(error).__name__})"
    )


# A refused request: the client's fault, reported once the client has stopped writing.
_REQUEST_FAULTS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
_DRAIN_S = 2.0


async def _drain(requests: AsyncIterator[tts_pb2.TextChunk]) -> None:
    """Read and drop what the client still sends, until it ends its input (bounded). A status
    sent while the client is writing can reach it as `INTERNAL: Internal error from Core`
    instead of the real code (grpc/grpc#36066), and a rejected request must not read as a
    broken worker."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_DRAIN_S):
            while (chunk := await anext(requests, None)) is not None:
                if chunk.end_of_input:
                    return


def _failed(span: Span, error: BaseException) -> None:
    status = error.status.name if isinstance(error, WorkerError) else type(error).__name__
    span.set_status(Status(StatusCode.ERROR, f"{status}: {error}"))


def unary_boundary(
    method: Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[ResponseT]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[ResponseT]]:
    """Map exceptions of a unary RPC to status codes."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ResponseT:
        try:
            return await method(self, request, context)
        except Exception as error:
            await _abort(context, error, method.__name__, self.stats)
            raise  # unreachable: abort raises

    return wrapper


def model_info(status: ModelStatus) -> tts_pb2.ModelInfo:
    """A ModelStatus as the proto message."""
    return tts_pb2.ModelInfo(
        model_id=status.spec.id,
        adapter=status.spec.adapter,
        resident=status.resident,
        refcount=status.refcount,
        languages=list(status.spec.languages),
        native_sample_rate=status.native_sample_rate,
        load_ms=status.load_ms,
        voices=sorted(status.spec.voices),
    )


class TTSServicer(tts_pb2_grpc.TTSServicer):
    """Implements tts.proto for one worker."""

    def __init__(
        self,
        worker_name: str,
        models: ModelManager,
        sessions: SessionTable,
        executor: DeadlineExecutor,
        settings: StreamSettings,
        stats: WorkerStats,
        credentials: Credentials | None = None,
    ) -> None:
        self.worker_name = worker_name
        self.models = models
        self.sessions = sessions
        self.stats = stats
        self.credentials = credentials or Credentials()
        self.draining = False
        self._executor = executor
        self._settings = settings
        self._capabilities = self._derive_capabilities()

    # -- sessions ------------------------------------------------------------------------

    @unary_boundary
    async def StartSession(
        self, request: tts_pb2.StartSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.StartSessionResponse:
        """Acquire the model and open the session, owned by the caller."""
        span = self._span("voicefleet.worker.start_session", context, request.session_id)
        try:
            response = await self._start_session(request, context)
        except BaseException as error:
            _failed(span, error)
            raise
        finally:
            span.end()
        span.set_attribute("voicefleet.model", response.model_id)
        return response

    async def _start_session(
        self, request: tts_pb2.StartSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.StartSessionResponse:
        owner = self.credentials.caller(context)
        self._refuse_if_draining("sessions")
        self.sessions.reserve(owner, request.session_id)
        spec = self.models.resolve(request.model_id, request.voice)
        if not speaks(spec.languages, request.language):
            raise InvalidRequest(
                f"model {spec.id!r} speaks {', '.join(spec.languages)}, not {request.language!r}"
            )
        model = await self.models.acquire(spec.id)
        try:
            self._refuse_if_draining("sessions")  # the drain may have begun during the load
            # A public voice name becomes the adapter's own; any other name goes as it is.
            voice = spec.voices.get(request.voice, request.voice)
            options = model.adapter.parse_options(voice, dict(request.options))
            session = WorkerSession(request.session_id, spec.id, options, owner)
            session.unpaced = request.unpaced
            self.sessions.add(session)
        except BaseException:
            self.models.release(spec.id)
            raise
        self.stats.metrics.sessions.inc()
        log.info("session %s of %s started on model %s", request.session_id, owner, spec.id)
        return tts_pb2.StartSessionResponse(
            session_id=request.session_id,
            model_id=spec.id,
            format=OUTPUT_FORMAT,
            worker_name=self.worker_name,
        )

    @unary_boundary
    async def EndSession(
        self, request: tts_pb2.EndSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.EndSessionResponse:
        """Stop any stream and release the model."""
        session = self.sessions.get(self.credentials.caller(context), request.session_id)
        self.end_session(session)
        return tts_pb2.EndSessionResponse(session_id=session.id, frames_sent=session.frames_sent)

    def end_session(self, session: WorkerSession) -> None:
        """Close one session (also used by the idle reaper and the drain)."""
        if not self.sessions.remove(session):
            return
        if session.stream is not None:
            session.stream.stop()
        self.models.release(session.model_id)
        log.info("session %s ended after %d frames", session.id, session.frames_sent)

    def _span(
        self, name: str, context: grpc.aio.ServicerContext[Any, Any], session: str = ""
    ) -> Span:
        """A span under the caller's (the orchestrator's turn, from gRPC metadata)."""
        span = tracing.tracer().start_span(
            name, context=tracing.extract(context.invocation_metadata()), kind=SpanKind.SERVER
        )
        span.set_attribute("voicefleet.worker", self.worker_name)
        if session:
            span.set_attribute("voicefleet.session", session)
        return span

    def _refuse_if_draining(self, what: str) -> None:
        if self.draining:
            raise Draining(
                f"worker draining: {self.worker_name} is shutting down and takes no new {what}; "
                "use another worker"
            )

    # -- streaming -----------------------------------------------------------------------

    async def Synthesize(
        self,
        request_iterator: AsyncIterator[tts_pb2.TextChunk],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[tts_pb2.AudioFrame]:
        """Text chunks in, paced frames out."""
        stream: SynthesisStream | None = None
        span = self._span("voicefleet.worker.synthesize", context)
        try:
            first = await anext(request_iterator, None)
            if first is None:
                raise InvalidRequest("Synthesize needs at least one TextChunk")
            span.set_attribute("voicefleet.session", first.session_id)
            session = self.sessions.get(self.credentials.caller(context), first.session_id)
            if session.stream is not None:
                raise SessionBusy(f"session {session.id!r} is already synthesizing; STOP it first")
            self._refuse_if_draining("streams")
            stream = SynthesisStream(
                session, self.models.adapter, self._executor, self._settings, self.stats
            )
            if session.paused:
                stream.control.hold()
            session.stream = stream
            session.touch()
            span.set_attribute("voicefleet.model", session.model_id)
            async for frame in stream.run(first, request_iterator):
                if frame.sequence == 0 or frame.final:
                    span.add_event("final_frame" if frame.final else "first_frame")
                yield frame
        except Exception as error:
            _failed(span, error)
            if isinstance(error, WorkerError) and error.status in _REQUEST_FAULTS:
                await _drain(request_iterator)
            await _abort(context, error, "Synthesize", self.stats)
        finally:
            if stream is not None:
                span.set_attribute("voicefleet.frames", stream.frames_sent)
            span.end()
            if stream is not None and stream.session.stream is stream:
                stream.session.stream = None
                stream.session.touch()

    @unary_boundary
    async def Control(
        self, request: tts_pb2.ControlRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.ControlResponse:
        """PAUSE / RESUME / STOP act on the session's current stream (a PAUSE with none running
        holds the next one; STOP clears it); RELOAD on its model."""
        session = self.sessions.get(self.credentials.caller(context), request.session_id)
        session.touch()
        stream = session.stream
        command = request.command
        if command == tts_pb2.CONTROL_COMMAND_RELOAD:
            await self.models.reload(session.model_id)
        elif command not in (
            tts_pb2.CONTROL_COMMAND_PAUSE,
            tts_pb2.CONTROL_COMMAND_RESUME,
            tts_pb2.CONTROL_COMMAND_STOP,
        ):
            raise InvalidRequest(f"unknown control command {command}")
        else:
            session.paused = command == tts_pb2.CONTROL_COMMAND_PAUSE
            if stream is None:
                pass
            elif command == tts_pb2.CONTROL_COMMAND_PAUSE:
                stream.control.pause()
            elif command == tts_pb2.CONTROL_COMMAND_RESUME:
                stream.control.resume()
            else:
                stream.stop()
                session.stream = None
        return tts_pb2.ControlResponse(
            session_id=session.id,
            command=command,
            state=stream.state
            if session.stream is not None and stream
            else tts_pb2.SESSION_STATE_IDLE,
            frames_sent=stream.frames_sent if stream else 0,
        )

    # -- models and capabilities ---------------------------------------------------------

    @unary_boundary
    async def ListModels(
        self, request: tts_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.ListModelsResponse:
        """The catalog with residency."""
        return tts_pb2.ListModelsResponse(
            models=[model_info(s) for s in self.models.status()],
            default_model_id=self.models.default_model_id,
        )

    @unary_boundary
    async def LoadModel(
        self, request: tts_pb2.LoadModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.LoadModelResponse:
        """Make a model resident."""
        if not request.model_id:
            raise InvalidRequest("LoadModel needs a model_id")
        _, loaded_now = await self.models.ensure_loaded(request.model_id)
        return tts_pb2.LoadModelResponse(model=self._info(request.model_id), loaded_now=loaded_now)

    @unary_boundary
    async def UnloadModel(
        self, request: tts_pb2.UnloadModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.UnloadModelResponse:
        """Drop a resident model no session uses."""
        if not request.model_id:
            raise InvalidRequest("UnloadModel needs a model_id")
        unloaded = await self.models.unload(request.model_id)
        return tts_pb2.UnloadModelResponse(
            model=self._info(request.model_id), unloaded_now=unloaded
        )

    def _info(self, model_id: str) -> tts_pb2.ModelInfo:
        return next(model_info(s) for s in self.models.status() if s.spec.id == model_id)

    @unary_boundary
    async def GetCapabilities(
        self, request: tts_pb2.GetCapabilitiesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.GetCapabilitiesResponse:
        """The capability record."""
        caps = self.capabilities()
        return tts_pb2.GetCapabilitiesResponse(
            worker_name=self.worker_name,
            capabilities=tts_pb2.Capabilities(**caps.model_dump()),
            resident_models=self.models.resident_ids,
            available_models=sorted(self.models.catalog),
            voices=self.models.voices,
            active_sessions=len(self.sessions),
            max_sessions=self.sessions.max_sessions,
            load=tts_pb2.WorkerLoad(
                active_sessions=len(self.sessions),
                active_streams=self.stats.active_streams,
                queue_depth=self.stats.queue_depth,
                rtf=self.stats.rtf or 0.0,
                first_audio_ms_p50=self.stats.first_audio_ms_p50 or 0.0,
            ),
        )

    def capabilities(self) -> WorkerCapabilities:
        """What this worker can do (fixed by its catalog)."""
        return self._capabilities

    def _derive_capabilities(self) -> WorkerCapabilities:
        """Union of what the catalog's adapters can do."""
        classes = adapter_classes()
        specs = list(self.models.catalog.values())
        caps = [classes[s.adapter].capabilities for s in specs if s.adapter in classes]
        return WorkerCapabilities(
            streaming=any(c.streaming for c in caps),
            zero_shot=any(c.zero_shot for c in caps),
            lora=any(c.lora for c in caps),
            cpu_ok=any(c.cpu_ok for c in caps),
            languages=sorted({lang for s in specs for lang in s.languages}),
            emotive_zero_prompt=any(c.emotive_zero_prompt for c in caps),
        )
