"""The turn decisions of one session: (state, event, now) -> actions, and nothing else.

No sockets, models, tasks or sleeps live here: `TurnCore.handle` takes one event and the time,
updates the conversation's state and returns what to do. Tests drive it with scripted events
and a fake clock. This module decides listening (speculation, the end of the turn, text input,
limits); speaking.py decides barge-in and the reply's lifecycle; turn_state.py holds the state.

Listening: a pause in speech starts a speculative transcription and, if it has words, a held
reply; speech resuming drops both; the end of speech commits them (or transcribes now).
Barge-in: whatever the segmenter's own state, voice onset while a reply is committed is a
candidate: the reply is held at once (and the client told to pause if it was audible); it is
real after `barge_in_min_speech_ms` of voice (the reply is dropped), and a false alarm after
`false_alarm_ms` of silence (the reply continues where it stopped).
"""

from __future__ import annotations

from voicefleet.orchestrator.end_of_turn import Verdict
from voicefleet.orchestrator.protocol import ErrorEvent, TranscriptEvent
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.speaking import SpeakingDecisions
from voicefleet.orchestrator.tool_decisions import ToolDecisions
from voicefleet.orchestrator.turn_events import (
    CancelReply,
    CancelTranscription,
    Close,
    CommitReply,
    Hangup,
    Heard,
    InterruptRequest,
    Measured,
    ReplyAudible,
    ReplyEnded,
    ReplyText,
    ResetListening,
    Send,
    SetHangover,
    TextInput,
    Tick,
    ToolAnswered,
    ToolCalled,
    ToolProblem,
    Transcribe,
    Transcribed,
    TurnAction,
    TurnEnded,
    TurnEvent,
    Voicing,
)
from voicefleet.orchestrator.turn_state import ReplyState, Speculation, TurnRules
from voicefleet.orchestrator.vad import SpeechEnded, SpeechPaused, SpeechResumed

__all__ = ["TurnCore", "TurnRules"]


class TurnCore(SpeakingDecisions, ToolDecisions):
    """One session's conversation state and every decision about it."""

    def start(self) -> list[TurnAction]:
        """The session opens: LISTENING."""
        self._move(State.LISTENING, "hello")
        return self._flush()

    def handle(self, event: TurnEvent, now: float) -> list[TurnAction]:
        """Decide what `event` means at `now`."""
        if self.state is State.TERMINATED:
            return []
        if isinstance(event, Voicing):
            self._voicing(event, now)
        elif isinstance(event, Heard):
            self._heard(event, now)
        elif isinstance(event, Transcribed):
            self._transcribed(event, now)
        elif isinstance(event, ReplyAudible):
            self._audible(event)
        elif isinstance(event, ReplyEnded):
            self._reply_ended(event, now)
        elif isinstance(event, TextInput):
            self._text(event, now)
        elif isinstance(event, InterruptRequest):
            self._cancel_reply("interrupt")
        elif isinstance(event, Hangup):
            self._close(event.reason)
        elif isinstance(event, Tick):
            self._limits(now)
            self._tool_timers(now)
        elif isinstance(event, ReplyText):
            self._reply_text(event, now)
        elif isinstance(event, ToolCalled):
            self._tool_called(event, now)
        elif isinstance(event, ToolAnswered):
            self._tool_answered(event, now)
        elif isinstance(event, ToolProblem):
            self._tool_problem(event)
        return self._flush()

    # -- helpers -------------------------------------------------------------------------

    def _close(self, reason: str, message: str | None = None) -> None:
        self._drop_speculation("hangup")
        if self.reply is not None:
            self._do(CancelReply(self.reply.id, "hangup"))
            self._remember(self.reply)
            self.reply = None
        self._move(State.TERMINATED, reason)
        self._do(Close(reason, message))

    # -- listening -----------------------------------------------------------------------

    def _heard(self, heard: Heard, now: float) -> None:
        event = heard.event
        self._last_activity = now
        if isinstance(event, SpeechPaused):
            if self.state is State.LISTENING and self.rules.speculative:
                self._drop_speculation("paused again")
                job = self._next_id()
                self.speculation = Speculation(job, pause_at=event.at)
                self._do(Transcribe(job, event.audio))
                self._decided("speculation_started", self.turn + 1)
        elif isinstance(event, SpeechResumed):
            self._drop_speculation("speech resumed")
        elif isinstance(event, SpeechEnded):
            self.in_speech = False
            self._ended_at = now
            if self.state is not State.LISTENING:
                return  # speech over a reply that never became a barge-in: noise
            speculation = self.speculation
            if speculation is not None:
                speculation.ending = event
                if speculation.text is not None:
                    self.speculation = None
                    self._end_turn(
                        speculation.text,
                        event,
                        now,
                        speculation.reply,
                        speculation.verdict,
                        speculation.queued_ms,
                        speculation.timed,
                    )
            else:
                job = self._next_id()
                self._ending = (job, event)
                self._do(Transcribe(job, event.audio))
        else:  # SpeechStarted
            self.in_speech = True

    def _transcribed(self, result: Transcribed, now: float) -> None:
        speculation = self.speculation
        ours = speculation is not None and speculation.job == result.job
        ending = (
            self._ending if self._ending is not None and self._ending[0] == result.job else None
        )
        if result.error is not None:
            if ours:
                assert speculation is not None
                self._drop_speculation("transcription failed")
                if speculation.ending is None:
                    return  # the end of the turn transcribes again
            elif ending is not None:
                self._ending = None
            else:
                return
            self._do(Send(ErrorEvent(code="asr_failed", message=result.error)))
            return
        if ours:
            assert speculation is not None
            speculation.text, speculation.queued_ms = result.text, result.queued_ms
            speculation.timed = result
            if speculation.ending is not None:
                self.speculation = None
                self._end_turn(
                    result.text,
                    speculation.ending,
                    now,
                    speculation.reply,
                    None,
                    result.queued_ms,
                    result,
                )
            elif result.text and self.state is State.LISTENING:
                # Prepared while the silence runs; nobody hears it until the turn is confirmed.
                text = self._with_carry(result.text)
                speculation.reply = self._start_reply(self.turn + 1, text, "answer", None)
                if self.rules.semantic:
                    self._judge(speculation, result.text)
        elif ending is not None:
            self._ending = None
            self._end_turn(result.text, ending[1], now, None, None, result.queued_ms, result)

    def _judge(self, speculation: Speculation, text: str) -> None:
        verdict = self.rules.judge.judge(text)
        wait_ms = self.rules.end_of_turn.wait_ms(verdict)
        speculation.verdict = verdict
        self._do(SetHangover(wait_ms, speculation.pause_at))
        self._decided("end_of_turn_judged", self.turn + 1, f"{verdict.value}: {wait_ms} ms")

    def _with_carry(self, text: str) -> str:
        return f"{self._carry} {text}" if self._carry else text

    def _drop_speculation(self, why: str) -> None:
        speculation, self.speculation = self.speculation, None
        if speculation is None:
            return
        if speculation.text is None:  # still queued or running: under load, that is a lane
            self._do(CancelTranscription(speculation.job))
        if speculation.reply is not None:
            self._do(CancelReply(speculation.reply.id, "speculation dropped"))
        self._decided("speculation_dropped", self.turn + 1, why)

    def _end_turn(
        self,
        text: str,
        ended: SpeechEnded,
        now: float,
        held: ReplyState | None,
        verdict: Verdict | None = None,
        queued_ms: float = 0.0,
        timed: Transcribed | None = None,
    ) -> None:
        if not text.strip() or self.state is not State.LISTENING:
            if held is not None:
                self._do(CancelReply(held.id, "no words"))
            return
        text, self._carry = self._with_carry(text), ""
        early = verdict is not None and verdict is not Verdict.INCOMPLETE
        self._released = (ended.at, text) if early else None
        self._do(TurnEnded("silence" if verdict is None else f"semantic/{verdict.value}"))
        self.turn += 1
        # When the end of speech was decided, less the silence that decided it; not `now`,
        # which is later when the transcript came after the hangover (TTFA counts that wait).
        speech_end_at = self._ended_at - (ended.decided_at - ended.at)
        self._do(Measured("endpoint_ms", (ended.decided_at - ended.at) * 1000))
        self._do(Measured("asr_ms", (now - self._ended_at) * 1000))
        self._do(Measured("asr_queue_ms", queued_ms))
        words = list(timed.words) if timed is not None and timed.words is not None else None
        confidence = timed.confidence if words is not None and timed is not None else None
        final = TranscriptEvent(text, True, self.turn, words=words, confidence=confidence)
        self._do(Send(final))
        self._move(State.WAITING_FOR_INPUT, "turn")
        if held is not None:
            held.turn = self.turn
            self.reply = held
            self._committed(held, now)
            self._do(CommitReply(held.id, self.turn, speech_end_at))
            self._decided("speculation_committed", self.turn)
        else:
            self.reply = self._start_reply(self.turn, text, "answer", speech_end_at)
            self._committed(self.reply, now)
            self._decided("turn_committed", self.turn)

    def _text(self, event: TextInput, now: float) -> None:
        self._last_activity = now
        self._cancel_reply("interrupt")
        if self.state is State.TERMINATED:
            return
        self._drop_speculation("text input")
        self._ending = None
        self._released, self._carry = None, ""
        self.in_speech = False
        self.barge_in.reset()
        self._do(ResetListening())
        self.turn += 1
        self._move(State.WAITING_FOR_INPUT, "turn" if event.mode == "answer" else "text")
        self.reply = self._start_reply(self.turn, event.text, event.mode, now)
        self._committed(self.reply, now)

    # -- barge-in ------------------------------------------------------------------------

    def _limits(self, now: float) -> None:
        rules = self.rules
        busy = self.reply is not None or self.in_speech or self.speculation is not None
        if not busy and self._ending is None and now - self._last_activity >= rules.idle_timeout_s:
            self._close("idle_timeout", f"no speech for {rules.idle_timeout_s:g} s")
        elif now - self._started >= rules.max_duration_s:
            self._close("max_duration", f"session longer than {rules.max_duration_s:g} s")
