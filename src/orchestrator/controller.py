"""The turn controller: one task per session owns every decision, whatever the transport.

Audio, text and control from the transport, ASR results, reply progress and a timer all become
events in one queue; what the person does (audio, text, interrupt, hang-up) is served before
anything already queued. Each event goes to the decision core (decisions.py), and the actions
it returns are carried out here: ASR jobs and replies run as tasks of their own that report
back with events, so the loop never waits on a model or a worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

from voicefleet.fleet.speaker import Speaker
from voicefleet.orchestrator.audio_in import AudioIn
from voicefleet.orchestrator.decisions import TurnCore
from voicefleet.orchestrator.echo import EchoCanceller, EchoTap, cancels_echo
from voicefleet.orchestrator.listening import Listening
from voicefleet.orchestrator.protocol import ErrorEvent, Hello, ProtocolError
from voicefleet.orchestrator.protocol_tools import ToolResponse
from voicefleet.orchestrator.reply import Reply
from voicefleet.orchestrator.reply_tools import SessionTools
from voicefleet.orchestrator.responder import Responder
from voicefleet.orchestrator.services import Services, SessionSink, TurnTiming
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.tool_decisions import with_tools
from voicefleet.orchestrator.turn_events import (
    URGENT_EVENTS,
    CancelReply,
    CancelTranscription,
    Close,
    CommitReply,
    Decided,
    Hangup,
    HoldReply,
    InterruptRequest,
    Measured,
    Moved,
    ReleaseReply,
    Remember,
    ReportTurn,
    ResetListening,
    ResolveTool,
    RunTool,
    Send,
    SetHangover,
    SpeakFiller,
    StartReply,
    TextInput,
    Tick,
    Transcribe,
    TurnAction,
    TurnEnded,
    TurnEvent,
)

log = logging.getLogger(__name__)
_TICK_S = 0.25
_CLOSE_WAIT_S = 5.0


class TurnController:
    """One conversation: takes the transport's input, runs the decisions, drives the replies."""

    def __init__(
        self,
        session_id: str,
        hello: Hello,
        services: Services,
        responder: Responder,
        sink: SessionSink,
        transport: str,
    ) -> None:
        self.id = session_id
        self.hello = hello
        self.services = services
        self.config = config = services.config
        self.responder = responder
        self.transport = transport
        # Refused (ToolDeclarationError) before anything starts: the transport says bad_tools.
        self.tools = SessionTools(hello.tools, responder.tools, self.post)
        self.closed = asyncio.Event()
        self.echo: EchoCanceller | None = None
        if cancels_echo(hello.echo_cancellation, transport, config.echo):
            self.echo = EchoCanceller(config.echo)
            sink = EchoTap(sink, self.echo)  # what the client plays is the canceller's far end
        self.sink = sink
        self.audio_in = AudioIn(hello.sample_rate, config.vad, self.echo)
        rules = with_tools(config.turn_rules(), responder.tools, responder.filler)
        self.core = TurnCore(session_id, rules, time.perf_counter())
        self.speaker = Speaker(
            services.router,
            services.pool,
            session_id,
            language=hello.language,
            model=hello.model,
            voice=hello.voice,
            settings=config.speaker_settings(),
        )
        self.listening = Listening(
            self.audio_in,
            services,
            sink,
            self.post,
            lambda: self.core.turn,
            hello.language,
            words=hello.transcript_words,
        )
        self.replies: dict[int, Reply] = {}
        self._urgent: collections.deque[TurnEvent] = collections.deque()
        self._queued: collections.deque[TurnEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timing = TurnTiming()
        self._jobs: dict[int, asyncio.Task[Any]] = {}  # transcriptions by job id
        self._loop: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._released: asyncio.Task[None] | None = None

    @property
    def state(self) -> State:
        """The conversation's state."""
        return self.core.state

    # -- the transport's side --------------------------------------------------------------

    async def start(self) -> None:
        """Open the session (LISTENING) and start its task."""
        self.services.metrics.sessions_active.inc()
        self.services.metrics.sessions_total.labels(self.transport).inc()
        await self._execute(self.core.start())
        self._loop = asyncio.create_task(self._run())
        self._ticker = asyncio.create_task(self._tick())

    async def push_audio(self, pcm: bytes) -> None:
        """Microphone audio at the declared rate (PCM16 mono LE)."""
        if self.closed.is_set():
            return
        for event in self.audio_in.push(pcm):
            self.post(event)
        self.listening.maybe_partial(self.state, self.core.speculation is not None)

    async def push_text(self, text: str, mode: str) -> None:
        """Text instead of speech: a turn of its own (interrupting any reply)."""
        text = " ".join(text.split())
        if not text:
            raise ProtocolError("bad_message", "text.text is empty")
        self.post(TextInput(text, mode))

    async def interrupt(self) -> None:
        """The client asked the agent to stop talking."""
        self.post(InterruptRequest())

    async def tool_response(self, response: ToolResponse) -> None:
        """The client's answer to a tool_request (the decisions judge whether one waits)."""
        self.post(self.tools.answered(response))

    async def close(self, reason: str) -> None:
        """End the session and wait (bounded) until it is closed."""
        if self.closed.is_set():
            return
        self.post(Hangup(reason))
        if self._loop is None or self._loop.done():
            await self._execute(self.core.handle(Hangup(reason), time.perf_counter()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await self.closed.wait()
        if not self.closed.is_set():
            await self._shut("close timed out")
        if self._released is not None:
            # The worker sessions and the responder: ended before close returns (bounded), so a
            # shutdown that follows does not cut them off.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await asyncio.shield(self._released)

    def post(self, event: TurnEvent) -> None:
        """Queue an event for the decisions (what the person does jumps the queue)."""
        lane = self._urgent if isinstance(event, URGENT_EVENTS) else self._queued
        lane.append(event)
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self.closed.is_set():
                if not self._urgent and not self._queued:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                event = self._urgent.popleft() if self._urgent else self._queued.popleft()
                try:
                    actions = self.core.handle(event, time.perf_counter())
                    await self._execute(actions)
                except Exception:
                    log.exception("session %s: handling %s failed", self.id, type(event).__name__)
        finally:
            if not self.closed.is_set():
                await self._shut("controller ended")

    async def _tick(self) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(_TICK_S)
            self.post(Tick())

    async def _execute(self, actions: list[TurnAction]) -> None:
        for action in actions:
            await self._do(action)

    async def _do(self, action: TurnAction) -> None:
        if isinstance(action, Send):
            await self.sink.send_event(action.message)
        elif isinstance(action, Moved):
            self.services.metrics.transitions.labels(
                action.previous.value, action.state.value
            ).inc()
            self.audio_in.set_state(action.state.value)
        elif isinstance(action, Transcribe):
            job_id = action.job
            self._jobs[job_id] = self._spawn(self.listening.transcribe(job_id, action.audio))
            self._jobs[job_id].add_done_callback(lambda _: self._jobs.pop(job_id, None))
        elif isinstance(action, CancelTranscription):
            if job := self._jobs.pop(action.job, None):
                job.cancel()
        elif isinstance(action, SetHangover):
            self.audio_in.segmenter.set_hangover(action.ms, action.pause_at)
        elif isinstance(action, TurnEnded):
            self._timing.end_of_turn = action.how
        elif isinstance(action, StartReply):
            self._start_reply(action)
        elif isinstance(action, CommitReply):
            if reply := self.replies.get(action.reply):
                reply.commit(action.turn, action.speech_end_at)
        elif isinstance(action, HoldReply):
            if reply := self.replies.get(action.reply):
                reply.hold()
        elif isinstance(action, ReleaseReply):
            if reply := self.replies.get(action.reply):
                reply.release()
        elif isinstance(action, CancelReply):
            self._cancel(action.reply)
        elif isinstance(action, Remember):
            if reply := self.replies.get(action.reply):
                rounds = self.tools.rounds(action.reply)
                self.responder.remember(action.user, reply.remembered, rounds)
        elif isinstance(action, ReportTurn):
            await self._report(action.reply)
        elif isinstance(action, ResetListening):
            self.audio_in.reset()
        elif isinstance(action, Measured):
            self._measured(action)
        elif isinstance(action, RunTool):
            self._spawn(self.tools.run(action))
        elif isinstance(action, ResolveTool):
            self.tools.resolve(action)
        elif isinstance(action, SpeakFiller):
            if reply := self.replies.get(action.reply):
                reply.interject(action.text)
        elif isinstance(action, Decided):
            self.services.metrics.decisions.labels(action.decision).inc()
            log.info(
                "session %s turn %d: %s%s",
                self.id,
                action.turn,
                action.decision,
                f" ({action.detail})" if action.detail else "",
            )
        elif isinstance(action, Close):
            if action.message is not None:
                await self.sink.send_event(
                    ErrorEvent(code=action.reason, message=action.message, fatal=True)
                )
            await self._shut(action.reason)

    # -- actions -------------------------------------------------------------------------

    def _spawn(self, step: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_reply(self, action: StartReply) -> None:
        tools = self.tools.for_reply(action.reply) if action.mode == "answer" else None
        texts: AsyncIterator[str] = (
            self.responder.reply(action.text, tools) if tools is not None else _once(action.text)
        )
        reply = Reply(
            action.reply,
            action.turn,
            texts,
            self.speaker,
            self.sink,
            self.post,
            lead_s=self.config.playback_lead_ms / 1000,
            committed=action.committed,
            speech_end_at=action.speech_end_at,
        )
        if action.committed:
            reply.commit(action.turn, action.speech_end_at)
        self.replies[action.reply] = reply
        if tools is not None:
            tools.attach(reply.wait_committed)  # a speculative reply's calls wait for its turn

    def _cancel(self, reply_id: int) -> None:
        reply = self.replies.get(reply_id)
        if reply is None:
            return
        reply.cancel()
        self._spawn(self._forget_later(reply))

    async def _forget_later(self, reply: Reply) -> None:
        await reply.wait()
        self.replies.pop(reply.id, None)
        self.tools.forget(reply.id)

    async def _report(self, reply_id: int) -> None:
        reply = self.replies.get(reply_id)
        if reply is None:
            return
        metrics = self.services.metrics
        timings = reply.timings
        if timings.underruns:
            metrics.underruns.inc(timings.underruns)
        if reply.failovers:
            metrics.failovers.inc(reply.failovers)
        for state, count in self.speaker.placements.items():
            metrics.placements.labels(model=state).inc(count)
        self.speaker.placements.clear()
        if reply.stream.stalls:
            metrics.stalls.inc(reply.stream.stalls)
        for code, message in timings.errors:
            metrics.errors.labels(code).inc()
            await self.sink.send_event(ErrorEvent(code=code, message=message))
        if timings.frames_sent:
            timing, self._timing = self._timing, TurnTiming()
            await self.sink.send_event(timing.report(reply, metrics))
        if not reply.cancelled:
            self.replies.pop(reply_id, None)
            self.tools.forget(reply_id)

    def _measured(self, action: Measured) -> None:
        if action.name == "barge_in_ms":
            self._timing.barge_in_ms = action.value_ms
            self.services.metrics.barge_in_seconds.observe(action.value_ms / 1000)
        elif action.name == "endpoint_ms":
            self._timing.endpoint_ms = action.value_ms
        elif action.name == "asr_ms":
            self._timing.asr_ms = action.value_ms
        elif action.name == "asr_queue_ms":
            self._timing.asr_queue_ms = action.value_ms

    async def _shut(self, reason: str) -> None:
        """Release everything; the worker sessions and the responder close in the background."""
        if self.closed.is_set():
            return
        self.closed.set()
        for reply in self.replies.values():
            reply.cancel()
        self.listening.close()
        for task in (self._ticker, *self._tasks):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self.services.metrics.sessions_active.dec()
        reduction = self.echo.reduction_db() if self.echo is not None else None
        if self.echo is not None and reduction is not None:
            self.services.metrics.echo_reduction_db.observe(reduction)
            log.info("session %s: echo canceller: %s", self.id, self.echo.summary())
        with contextlib.suppress(Exception):
            await self.sink.close(reason)
        self._released = _release(self._release())

    async def _release(self) -> None:
        replies = list(self.replies.values())
        await asyncio.gather(*(r.wait() for r in replies), return_exceptions=True)
        await asyncio.gather(
            self.speaker.close(),
            self.responder.close(),
            self.tools.close(),
            return_exceptions=True,
        )


_releasing: set[asyncio.Task[None]] = set()


def _release(step: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Clean-up that must finish even after the session object is gone."""
    task = asyncio.ensure_future(step)
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)
    return task


async def released(timeout_s: float = _CLOSE_WAIT_S) -> None:
    """Wait (bounded) for every closed session's clean-up: called before channels close."""
    if _releasing:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*_releasing, return_exceptions=True)


async def _once(text: str) -> AsyncGenerator[str, None]:
    yield text
