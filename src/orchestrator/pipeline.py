"""One conversation, whatever the transport: audio in -> VAD -> ASR -> responder -> TTS -> out.

    push_audio: any rate -> 16 kHz -> VoiceActivitySegmenter -> speech events
      SpeechStarted  while SPEAKING  -> barge-in: pause playback and the worker (BARGED_IN)
      SpeechPaused   while LISTENING -> transcribe speculatively; if words, start the reply held
      SpeechResumed                  -> drop the speculation (and its held reply)
      SpeechEnded    while LISTENING -> the turn: commit the speculation or transcribe now
      voiced >= barge_in_min_speech  -> the barge-in is real: STOP, cancel playback, LISTENING
      SpeechPaused   while BARGED_IN -> it was noise: RESUME where it paused (SPEAKING)
    Reply (reply.py): responder text -> ReplySpeaker (routed worker, failover) -> paced frames.

The transport gives audio, text and control in and receives events and frames through a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicefleet.audio.pcm import PcmFormatError, float_to_s16le, s16le_to_float
from voicefleet.audio.resample import StreamResampler
from voicefleet.fleet.speaker import ReplySpeaker
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioEnd,
    AudioPause,
    AudioResume,
    AudioStart,
    ErrorEvent,
    Hello,
    ProtocolError,
    ServerMessage,
    StateChanged,
    TranscriptEvent,
    TurnMetrics,
)
from voicefleet.orchestrator.reply import Reply, ReplyHooks
from voicefleet.orchestrator.responder import Responder
from voicefleet.orchestrator.services import Services, SessionSink, TurnTiming
from voicefleet.orchestrator.session import SessionStateMachine, State, Transition
from voicefleet.orchestrator.vad import (
    VAD_RATE,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadEvent,
    VoiceActivitySegmenter,
)

log = logging.getLogger(__name__)


@dataclass
class _Speculation:
    """A transcription (and maybe a held reply) started when silence began."""

    task: asyncio.Task[str]
    started: float
    reply: Reply | None = None


class VoiceSession(ReplyHooks):
    """The per-session pipeline and its state machine."""

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
        self.config = services.config
        self.responder = responder
        self.sink = sink
        self.transport = transport
        self.machine = SessionStateMachine(session_id)
        self.machine.observe(self._on_transition)
        self.segmenter = VoiceActivitySegmenter(self.config.vad)
        self.speaker = ReplySpeaker(
            services.router,
            services.pool,
            session_id,
            language=hello.language,
            model=hello.model,
            voice=hello.voice,
            first_frame_timeout_s=self.config.first_frame_timeout_s,
        )
        self._resampler = StreamResampler(hello.sample_rate, VAD_RATE)
        self._turn = 0
        self._reply: Reply | None = None
        self._speculation: _Speculation | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._barge_started: float | None = None
        self._speech_end_wall: float | None = None
        self._started = time.monotonic()
        self._last_activity = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._last_partial = 0.0
        self._pending_transitions: list[Transition] = []
        self._timing = TurnTiming()
        self._spawned: set[asyncio.Task[None]] = set()
        self._partial_task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @property
    def state(self) -> State:
        """The state machine's state."""
        return self.machine.state

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open: LISTENING, limits watchdog."""
        self.services.metrics.sessions_active.inc()
        self.services.metrics.sessions_total.labels(self.transport).inc()
        self.machine.to(State.LISTENING, "hello")
        await self._flush_state_events()
        self._watchdog = asyncio.create_task(self._watch_limits())

    async def close(self, reason: str) -> None:
        """Terminate: stop any reply, release workers, tell the client, close the transport."""
        if self.state is State.TERMINATED:
            return
        self.machine.to(State.TERMINATED, reason)
        await self._flush_state_events()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        await self._drop_speculation()
        await self._cancel_reply("hangup")
        if self._turn_task is not None and self._turn_task is not asyncio.current_task():
            self._turn_task.cancel()
        await self.speaker.close()
        self.services.metrics.sessions_active.dec()
        with contextlib.suppress(Exception):
            await self.sink.close(reason)
        self.closed.set()

    async def _watch_limits(self) -> None:
        config = self.config
        while self.state is not State.TERMINATED:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            busy = self._reply is not None or self.segmenter.in_speech
            if not busy and now - self._last_activity >= config.idle_timeout_s:
                await self._fatal("idle_timeout", f"no speech for {config.idle_timeout_s:g} s")
                return
            if now - self._started >= config.max_duration_s:
                await self._fatal(
                    "max_duration", f"session longer than {config.max_duration_s:g} s"
                )
                return

    async def _fatal(self, reason: str, message: str) -> None:
        await self.sink.send_event(ErrorEvent(code=reason, message=message, fatal=True))
        await self.close(reason)

    # -- state events ----------------------------------------------------------------------

    def _on_transition(self, move: Transition) -> None:
        self.services.metrics.transitions.labels(move.previous.value, move.state.value).inc()
        self.segmenter.set_state(move.state.value)
        # Observers are synchronous; the events go out at the next _flush_state_events().
        self._pending_transitions.append(move)

    async def _flush_state_events(self) -> None:
        moves, self._pending_transitions = self._pending_transitions, []
        for move in moves:
            await self.sink.send_event(
                StateChanged(
                    state=move.state.value, previous=move.previous.value, reason=move.reason
                )
            )

    async def _move(self, target: State, reason: str) -> None:
        self.machine.to(target, reason)
        await self._flush_state_events()

    # -- input -----------------------------------------------------------------------------

    async def push_audio(self, pcm: bytes) -> None:
        """Microphone audio at the declared rate (PCM16 mono LE)."""
        if self.state is State.TERMINATED:
            return
        try:
            samples = s16le_to_float(pcm)
        except PcmFormatError as error:
            raise ProtocolError("odd_length_pcm", str(error)) from None
        resampled = self._resampler.process(samples)
        pcm16 = np.frombuffer(float_to_s16le(resampled), dtype="<i2").astype(np.int16)
        for event in self.segmenter.push(pcm16):
            await self._on_vad(event)
        await self._check_barge_in()
        self._maybe_partial()

    async def push_text(self, text: str, mode: str) -> None:
        """Text instead of speech: a turn of its own (interrupting any reply)."""
        text = " ".join(text.split())
        if not text:
            raise ProtocolError("bad_message", "text.text is empty")
        self._last_activity = time.monotonic()
        await self._cancel_reply("interrupt")
        await self._drop_speculation()
        self.segmenter.reset()
        self._speech_end_wall = time.perf_counter()
        turn = self._next_turn()
        await self._begin_turn(turn, text, mode=mode, committed=True)

    async def interrupt(self) -> None:
        """The client asked the agent to stop talking."""
        await self._cancel_reply("interrupt")

    # -- VAD events ------------------------------------------------------------------------

    async def _on_vad(self, event: VadEvent) -> None:
        self._last_activity = time.monotonic()
        state = self.state
        if isinstance(event, SpeechStarted):
            if state is State.SPEAKING:
                await self._barge_in_begin()
        elif isinstance(event, SpeechPaused):
            if state is State.BARGED_IN and not self._barge_is_real():
                await self._barge_in_false_alarm()
            elif state is State.LISTENING and self.config.speculative:
                self._speculate(event.audio)
        elif isinstance(event, SpeechResumed):
            await self._drop_speculation()
        elif isinstance(event, SpeechEnded) and state in (State.LISTENING, State.WAITING_FOR_INPUT):
            self._speech_end_wall = time.perf_counter() - (event.decided_at - event.at)
            # Off the input path: transcription takes a while and audio keeps arriving.
            self._turn_task = asyncio.create_task(self._end_of_turn(event))

    def _maybe_partial(self) -> None:
        """A partial transcript while the person speaks, only when the ASR pool is idle, so a
        partial never queues ahead of the turn's final transcription."""
        interval = self.config.partial_interval_s
        if (
            not interval
            or self.state is not State.LISTENING
            or not self.segmenter.in_speech
            or self._speculation is not None
            or self.services.asr.in_flight
            or self.segmenter.voiced_s < interval
            or time.monotonic() - self._last_partial < interval
        ):
            return
        self._last_partial = time.monotonic()
        audio = self.segmenter.utterance_audio()
        turn = self._turn + 1
        self._partial_task = asyncio.create_task(self._send_partial(audio, turn))

    async def _send_partial(self, audio: np.ndarray, turn: int) -> None:
        try:
            text = await self._transcribe(audio)
        except Exception:
            return  # a failed partial is not worth an error; the final will say
        # Stale when the turn's final has gone out meanwhile.
        if text and self._turn < turn and self.state is not State.TERMINATED:
            await self.sink.send_event(TranscriptEvent(text=text, final=False, turn=turn))

    def _speculate(self, audio: np.ndarray) -> None:
        task = asyncio.create_task(self._transcribe(audio))
        self._speculation = _Speculation(task, time.perf_counter())
        task.add_done_callback(lambda _t: self._spawn(self._speculative_reply(task)))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _speculative_reply(self, task: asyncio.Task[str]) -> None:
        speculation = self._speculation
        if speculation is None or speculation.task is not task or task.cancelled():
            return
        if task.exception() is not None or not task.result():
            return
        if self.state is State.LISTENING and speculation.reply is None:
            # Start the reply while the hangover runs; nobody hears it until the turn is confirmed.
            speculation.reply = self._start_reply(self._turn + 1, task.result(), "answer", False)

    async def _drop_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is not None and speculation.reply is not None:
            await speculation.reply.cancel()

    async def _transcribe(self, audio: np.ndarray) -> str:
        samples = audio.astype(np.float32) / 32768.0
        transcript = await self.services.asr.transcribe(samples)
        self.services.metrics.asr_seconds.observe(transcript.compute_ms / 1000)
        return transcript.text.strip()

    async def _end_of_turn(self, event: SpeechEnded) -> None:
        speculation, self._speculation = self._speculation, None
        asr_began = time.perf_counter()
        try:
            if speculation is not None:
                text = await speculation.task
            else:
                text = await self._transcribe(event.audio)
        except Exception as error:
            self.services.metrics.errors.labels("asr").inc()
            await self.sink.send_event(
                ErrorEvent(code="asr_failed", message=f"transcription failed: {error}")
            )
            return
        asr_ms = (time.perf_counter() - asr_began) * 1000
        if not text or self.state is State.TERMINATED:
            if speculation is not None and speculation.reply is not None:
                await speculation.reply.cancel()
            return
        if self._reply is not None:  # a new turn supersedes a reply still being prepared
            await self._cancel_reply("superseded")
        turn = self._next_turn()
        await self.sink.send_event(TranscriptEvent(text=text, final=True, turn=turn))
        self._timing.asr_ms = asr_ms
        self._timing.endpoint_ms = (event.decided_at - event.at) * 1000
        held = speculation.reply if speculation is not None else None
        await self._begin_turn(turn, text, mode="answer", committed=True, held=held)

    def _next_turn(self) -> int:
        self._turn += 1
        return self._turn

    # -- replies ---------------------------------------------------------------------------

    def _start_reply(self, turn: int, text: str, mode: str, committed: bool) -> Reply:
        texts: AsyncIterator[str] = self.responder.reply(text) if mode == "answer" else _once(text)
        return Reply(
            turn,
            texts,
            self.speaker,
            self,
            lead_s=self.config.playback_lead_ms / 1000,
            committed=committed,
        )

    async def _begin_turn(
        self, turn: int, text: str, *, mode: str, committed: bool, held: Reply | None = None
    ) -> None:
        if self.state is State.LISTENING:
            await self._move(State.WAITING_FOR_INPUT, "turn" if mode == "answer" else "text")
        reply = held or self._start_reply(turn, text, mode, committed)
        reply.turn = turn
        self._reply = reply
        reply.commit()
        max_turns = self.config.max_turns
        if max_turns and turn >= max_turns:
            self._turn_task = asyncio.create_task(self._close_after(reply, "max_turns"))

    async def _close_after(self, reply: Reply, reason: str) -> None:
        await reply.wait()
        await self._fatal(reason, f"the session reached max_turns={self.config.max_turns}")

    async def _cancel_reply(self, reason: str) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        await reply.cancel()
        if reply.timings.frames_sent:
            await self.sink.send_event(AudioCancel(turn=reply.turn, reason=reason))
            await self.sink.send_event(self._turn_metrics(reply))
        if self.state in (State.SPEAKING, State.BARGED_IN, State.WAITING_FOR_INPUT):
            await self._move(State.LISTENING, reason)

    # ReplyHooks: called by the current reply.

    async def event(self, message: ServerMessage) -> None:
        """Forward a reply's event."""
        await self.sink.send_event(message)

    async def audio(self, pcm: bytes) -> None:
        """Forward a reply's frame."""
        self.services.metrics.frames_sent.inc()
        await self.sink.send_audio(pcm)

    async def first_audio(self) -> None:
        """The reply becomes audible: SPEAKING, audio_start, latency metrics."""
        reply = self._reply
        if reply is None:
            return
        if self.state is State.WAITING_FOR_INPUT:
            await self._move(State.SPEAKING, "reply audio")
        await self.sink.send_event(AudioStart(turn=reply.turn))
        if self.segmenter.in_speech:
            # The person is already talking as the reply begins: treat it as a barge-in.
            await self._barge_in_begin()

    async def finished(self, completed: bool) -> None:
        """A reply ended on its own (final frame, empty reply, or failure)."""
        reply = self._reply
        if reply is None:
            return
        self._reply = None
        timings = reply.timings
        self._last_activity = time.monotonic()
        metrics = self.services.metrics
        if timings.underruns:
            metrics.underruns.inc(timings.underruns)
        if timings.failovers:
            metrics.failovers.inc(timings.failovers)
        for code, message in timings.errors:
            metrics.errors.labels(code).inc()
            await self.sink.send_event(ErrorEvent(code=code, message=message))
        if timings.frames_sent:
            await self.sink.send_event(AudioEnd(turn=reply.turn, frames=timings.frames_sent))
            await self.sink.send_event(self._turn_metrics(reply))
        if self.state in (State.SPEAKING, State.WAITING_FOR_INPUT, State.BARGED_IN):
            await self._move(State.LISTENING, "reply done" if completed else "no reply")

    def _turn_metrics(self, reply: Reply) -> TurnMetrics:
        timing, self._timing = self._timing, TurnTiming()
        return timing.report(reply, self._speech_end_wall, self.services.metrics)

    # -- barge-in --------------------------------------------------------------------------

    async def _barge_in_begin(self) -> None:
        reply = self._reply
        if reply is None:
            return
        self._barge_started = time.perf_counter()
        reply.pause()
        await self.sink.send_event(
            AudioPause(turn=reply.turn, input_ms=round(self.segmenter.now * 1000, 1))
        )
        barge_ms = (time.perf_counter() - self._barge_started) * 1000
        self._timing.barge_in_ms = barge_ms
        self.services.metrics.barge_in_seconds.observe(barge_ms / 1000)
        await self._move(State.BARGED_IN, "speech over the agent")
        await self.speaker.pause()

    def _barge_is_real(self) -> bool:
        voiced_ms = self.segmenter.voiced_s * 1000
        return voiced_ms >= self.config.barge_in_min_speech_ms

    async def _check_barge_in(self) -> None:
        if self.state is State.BARGED_IN and self._barge_is_real():
            await self._cancel_reply("barge_in")

    async def _barge_in_false_alarm(self) -> None:
        reply = self._reply
        if reply is None:
            return
        await self.speaker.resume()
        reply.resume()
        await self.sink.send_event(AudioResume(turn=reply.turn))
        await self._move(State.SPEAKING, "noise, not speech")


async def _once(text: str) -> AsyncGenerator[str, None]:
    yield text
