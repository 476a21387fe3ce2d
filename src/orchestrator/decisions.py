"""The turn decisions of one session: (state, event, now) -> actions, and nothing else.

No sockets, models, tasks or sleeps live here: `TurnCore.handle` takes one event and the time,
updates the conversation's state and returns what to do. Tests drive it with scripted events
and a fake clock.

Listening: a pause in speech starts a speculative transcription and, if it has words, a held
reply; speech resuming drops both; the end of speech commits them (or transcribes now).
Barge-in: whatever the segmenter's own state, voice onset while a reply is committed is a
candidate: the reply is held at once (and the client told to pause if it was audible); it is
real after `barge_in_min_speech_ms` of voice (the reply is dropped), and a false alarm after
`false_alarm_ms` of silence (the reply continues where it stopped). The onset window restarts
after every false alarm, so a cough never blinds the next interruption.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioPause,
    AudioResume,
    ErrorEvent,
    StateChanged,
    TranscriptEvent,
)
from voicefleet.orchestrator.session import SessionStateMachine, State
from voicefleet.orchestrator.turn_events import (
    CancelReply,
    Close,
    CommitReply,
    Decided,
    Hangup,
    Heard,
    HoldReply,
    InterruptRequest,
    Measured,
    Moved,
    ReleaseReply,
    Remember,
    ReplyAudible,
    ReplyEnded,
    ReportTurn,
    ResetListening,
    Send,
    StartReply,
    TextInput,
    Tick,
    Transcribe,
    Transcribed,
    TurnAction,
    TurnEvent,
    Voicing,
)
from voicefleet.orchestrator.vad import FRAME_MS, SpeechEnded, SpeechPaused, SpeechResumed

_FRAME_S = FRAME_MS / 1000


@dataclass(frozen=True)
class TurnRules:
    """The settings the decisions use (from PipelineConfig)."""

    speculative: bool = True
    onset_ms: int = 100  # voiced time (within a short window) that makes a barge-in candidate
    barge_in_min_speech_ms: int = 250
    false_alarm_ms: int = 250  # silence that ends a candidate as noise
    idle_timeout_s: float = 300.0
    max_duration_s: float = 3600.0
    max_turns: int = 0


@dataclass
class _Reply:
    id: int
    turn: int
    user: str  # what the person said ("" for spoken-as-is text: nothing to remember)
    audible: bool = False
    ended: bool = False  # sent its last frame while a barge-in candidate was pending


@dataclass
class _Speculation:
    job: int
    text: str | None = None  # None while transcribing
    reply: _Reply | None = None
    ending: SpeechEnded | None = None  # the turn ended; waiting for the text


@dataclass
class _Candidate:
    onset_at: float
    voiced: int  # voiced frames since the onset window began
    silent: int = 0  # consecutive unvoiced frames


@dataclass
class _Onset:
    """Voice onset: `frames` voiced frames within a window of `frames + 2`."""

    frames: int
    window: collections.deque[tuple[float, bool]] = field(init=False)

    def __post_init__(self) -> None:
        self.window = collections.deque(maxlen=self.frames + 2)

    def push(self, at: float, voiced: bool) -> float | None:
        """Add a frame; the onset time (start of its first voiced frame) once there is one."""
        self.window.append((at, voiced))
        if sum(v for _, v in self.window) < self.frames:
            return None
        first = next(t for t, v in self.window if v)
        return round(first - _FRAME_S, 3)

    def clear(self) -> None:
        self.window.clear()


class TurnCore:
    """One session's conversation state and every decision about it."""

    def __init__(self, session_id: str, rules: TurnRules, now: float) -> None:
        self.rules = rules
        self.machine = SessionStateMachine(session_id)
        self.turn = 0
        self.reply: _Reply | None = None
        self.speculation: _Speculation | None = None
        self.candidate: _Candidate | None = None
        self.in_speech = False
        self._ending: tuple[int, SpeechEnded] | None = None  # a turn waiting for its ASR job
        self._ended_at = now  # when the last end of speech was decided
        self._onset = _Onset(max(1, rules.onset_ms // FRAME_MS))
        self._ids = 0
        self._started = now
        self._last_activity = now
        self._out: list[TurnAction] = []

    @property
    def state(self) -> State:
        """Where the session is."""
        return self.machine.state

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
        return self._flush()

    # -- helpers -------------------------------------------------------------------------

    def _do(self, action: TurnAction) -> None:
        self._out.append(action)

    def _flush(self) -> list[TurnAction]:
        out, self._out = self._out, []
        return out

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _move(self, target: State, reason: str) -> None:
        previous = self.state
        self.machine.to(target, reason)
        self._do(Moved(previous, target, reason))
        self._do(Send(StateChanged(state=target.value, previous=previous.value, reason=reason)))

    def _decided(self, decision: str, turn: int, detail: str = "") -> None:
        self._do(Decided(decision, turn, detail))

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
                self.speculation = _Speculation(job)
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
                    self._end_turn(speculation.text, event, now, speculation.reply)
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
            speculation.text = result.text
            if speculation.ending is not None:
                self.speculation = None
                self._end_turn(result.text, speculation.ending, now, speculation.reply)
            elif result.text and self.state is State.LISTENING:
                # Prepared while the silence runs; nobody hears it until the turn is confirmed.
                speculation.reply = self._start_reply(self.turn + 1, result.text, "answer", None)
        elif ending is not None:
            self._ending = None
            self._end_turn(result.text, ending[1], now, None)

    def _drop_speculation(self, why: str) -> None:
        speculation, self.speculation = self.speculation, None
        if speculation is None:
            return
        if speculation.reply is not None:
            self._do(CancelReply(speculation.reply.id, "speculation dropped"))
        self._decided("speculation_dropped", self.turn + 1, why)

    def _end_turn(self, text: str, ended: SpeechEnded, now: float, held: _Reply | None) -> None:
        if not text.strip() or self.state is not State.LISTENING:
            if held is not None:
                self._do(CancelReply(held.id, "no words"))
            return
        self.turn += 1
        speech_end_at = now - (ended.decided_at - ended.at)
        self._do(Measured("endpoint_ms", (ended.decided_at - ended.at) * 1000))
        self._do(Measured("asr_ms", (now - self._ended_at) * 1000))
        self._do(Send(TranscriptEvent(text=text, final=True, turn=self.turn)))
        self._move(State.WAITING_FOR_INPUT, "turn")
        if held is not None:
            held.turn = self.turn
            self.reply = held
            self._do(CommitReply(held.id, self.turn, speech_end_at))
            self._decided("speculation_committed", self.turn)
        else:
            self.reply = self._start_reply(self.turn, text, "answer", speech_end_at)
            self._decided("turn_committed", self.turn)

    def _start_reply(self, turn: int, text: str, mode: str, speech_end_at: float | None) -> _Reply:
        reply = _Reply(self._next_id(), turn, text if mode == "answer" else "")
        committed = speech_end_at is not None
        self._do(StartReply(reply.id, turn, text, mode, committed, speech_end_at))
        return reply

    def _text(self, event: TextInput, now: float) -> None:
        self._last_activity = now
        self._cancel_reply("interrupt")
        if self.state is State.TERMINATED:
            return
        self._drop_speculation("text input")
        self._ending = None
        self.in_speech = False
        self.candidate = None
        self._onset.clear()
        self._do(ResetListening())
        self.turn += 1
        self._move(State.WAITING_FOR_INPUT, "turn" if event.mode == "answer" else "text")
        self.reply = self._start_reply(self.turn, event.text, event.mode, now)

    # -- barge-in ------------------------------------------------------------------------

    def _voicing(self, frame: Voicing, now: float) -> None:
        onset = self._onset.push(frame.at, frame.voiced)
        reply = self.reply
        if reply is None:
            return
        candidate = self.candidate
        if candidate is None:
            if onset is not None:
                self._candidate(reply, onset, frame.at)
            return
        if frame.voiced:
            candidate.voiced += 1
            candidate.silent = 0
            if candidate.voiced * FRAME_MS >= self.rules.barge_in_min_speech_ms:
                self._barge_in_real(reply)
        else:
            candidate.silent += 1
            if candidate.silent * FRAME_MS >= self.rules.false_alarm_ms:
                self._false_alarm(reply, now)

    def _candidate(self, reply: _Reply, onset_at: float, at: float) -> None:
        self.candidate = _Candidate(onset_at, self._onset.frames)
        self._do(HoldReply(reply.id))
        self._decided("barge_in_candidate", reply.turn, "audible" if reply.audible else "held")
        if reply.audible:
            self._pause_client(reply, at)

    def _pause_client(self, reply: _Reply, at: float) -> None:
        candidate = self.candidate
        assert candidate is not None
        self._do(Send(AudioPause(turn=reply.turn, input_ms=round(at * 1000, 1))))
        self._do(Measured("barge_in_ms", (at - candidate.onset_at) * 1000))
        self._move(State.BARGED_IN, "speech over the agent")

    def _barge_in_real(self, reply: _Reply) -> None:
        self._decided("barge_in_real", reply.turn)
        self._cancel_reply("barge_in")

    def _false_alarm(self, reply: _Reply, now: float) -> None:
        self.candidate = None
        self._onset.clear()
        self._decided("barge_in_false_alarm", reply.turn)
        if reply.audible:
            self._do(Send(AudioResume(turn=reply.turn)))
            self._move(State.SPEAKING, "noise, not speech")
        if reply.ended:
            self._finish(reply, now, completed=True)
        else:
            self._do(ReleaseReply(reply.id))

    # -- replies -------------------------------------------------------------------------

    def _audible(self, event: ReplyAudible) -> None:
        reply = self.reply
        if reply is None or reply.id != event.reply or reply.audible:
            return
        reply.audible = True
        if self.state is State.WAITING_FOR_INPUT:
            self._move(State.SPEAKING, "reply audio")
        if self.candidate is not None:  # a frame left just before the hold: pause the client
            self._pause_client(reply, self._onset.window[-1][0] if self._onset.window else 0.0)

    def _reply_ended(self, event: ReplyEnded, now: float) -> None:
        reply = self.reply
        if reply is None or reply.id != event.reply:
            return
        if self.candidate is not None and reply.audible and event.completed:
            reply.ended = True  # its tail may still be paused at the client: decide first
            return
        self._finish(reply, now, completed=event.completed)

    def _finish(self, reply: _Reply, now: float, *, completed: bool) -> None:
        self.reply = None
        self.candidate = None
        self._last_activity = now
        self._remember(reply)
        self._do(ReportTurn(reply.id))
        if self.state in (State.SPEAKING, State.WAITING_FOR_INPUT, State.BARGED_IN):
            self._move(State.LISTENING, "reply done" if completed else "no reply")
        self._check_max_turns(reply)

    def _cancel_reply(self, reason: str) -> None:
        reply, self.reply = self.reply, None
        self.candidate = None
        if reply is None:
            return
        self._do(CancelReply(reply.id, reason))
        if reply.audible:
            self._do(Send(AudioCancel(turn=reply.turn, reason=reason)))
        self._do(ReportTurn(reply.id))
        self._remember(reply)
        if self.state in (State.SPEAKING, State.BARGED_IN, State.WAITING_FOR_INPUT):
            self._move(State.LISTENING, reason)
        self._check_max_turns(reply)

    def _remember(self, reply: _Reply) -> None:
        if reply.user:
            self._do(Remember(reply.user, reply.id))

    def _check_max_turns(self, reply: _Reply) -> None:
        limit = self.rules.max_turns
        if limit and reply.turn >= limit and self.state is not State.TERMINATED:
            self._close("max_turns", f"the session reached max_turns={limit}")

    # -- limits --------------------------------------------------------------------------

    def _limits(self, now: float) -> None:
        rules = self.rules
        busy = self.reply is not None or self.in_speech or self.speculation is not None
        if not busy and self._ending is None and now - self._last_activity >= rules.idle_timeout_s:
            self._close("idle_timeout", f"no speech for {rules.idle_timeout_s:g} s")
        elif now - self._started >= rules.max_duration_s:
            self._close("max_duration", f"session longer than {rules.max_duration_s:g} s")
