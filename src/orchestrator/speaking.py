"""The speaking side of the turn decisions: a reply becoming audible, ending, being held by a
barge-in candidate, resumed after a false alarm, or dropped."""

from __future__ import annotations

from voicefleet.orchestrator.barge_in import Signal
from voicefleet.orchestrator.protocol import AudioCancel, AudioPause, AudioResume
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.turn_events import (
    CancelReply,
    HoldReply,
    Measured,
    ReleaseReply,
    ReplyAudible,
    ReplyEnded,
    ReportTurn,
    Send,
    Voicing,
)
from voicefleet.orchestrator.turn_state import CoreState, ReplyState


class SpeakingDecisions(CoreState):
    """Barge-in and the reply's lifecycle."""

    def _voicing(self, frame: Voicing, now: float) -> None:
        reply = self.reply
        signal = self.barge_in.frame(frame.at, frame.voiced, armed=reply is not None)
        if reply is None or signal is None:
            return
        if signal is Signal.CANDIDATE:
            self._candidate(reply, frame.at)
        elif signal is Signal.REAL:
            self._decided("barge_in_real", reply.turn)
            self._continued(reply)
            self._cancel_reply("barge_in")
        else:
            self._false_alarm(reply, now)

    def _candidate(self, reply: ReplyState, at: float) -> None:
        self._do(HoldReply(reply.id))
        self._decided("barge_in_candidate", reply.turn, "audible" if reply.audible else "held")
        if reply.audible:
            self._pause_client(reply, at)

    def _continued(self, reply: ReplyState) -> None:
        """Speech soon after a turn the judge ended early is that turn going on: its words are
        carried into the next turn, and neither they nor the cut-in reply enter history."""
        released, self._released = self._released, None
        if released is None or not reply.user:
            return
        speech_end, text = released
        gap_ms = (self.barge_in.real_onset_at - speech_end) * 1000
        if gap_ms > self.rules.end_of_turn.incomplete_ms:
            return
        self._carry = text
        reply.user = ""  # not remembered: the person had not finished
        self._decided("turn_continued", reply.turn, f"{gap_ms:.0f} ms after its end")

    def _pause_client(self, reply: ReplyState, at: float) -> None:
        self._do(Send(AudioPause(turn=reply.turn, input_ms=round(at * 1000, 1))))
        self._do(Measured("barge_in_ms", (at - self.barge_in.onset_at) * 1000))
        self._move(State.BARGED_IN, "speech over the agent")

    def _false_alarm(self, reply: ReplyState, now: float) -> None:
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
        if self.barge_in.pending:  # a frame left just before the hold: pause the client
            self._pause_client(reply, self.barge_in.last_at)

    def _reply_ended(self, event: ReplyEnded, now: float) -> None:
        reply = self.reply
        if reply is None or reply.id != event.reply:
            return
        if self.barge_in.pending and reply.audible and event.completed:
            reply.ended = True  # its tail may still be paused at the client: decide first
            return
        self._finish(reply, now, completed=event.completed)

    def _finish(self, reply: ReplyState, now: float, *, completed: bool) -> None:
        self.reply = None
        self.barge_in.drop()
        self._last_activity = now
        self._remember(reply)
        self._do(ReportTurn(reply.id))
        if self.state in (State.SPEAKING, State.WAITING_FOR_INPUT, State.BARGED_IN):
            self._move(State.LISTENING, "reply done" if completed else "no reply")
        self._check_max_turns(reply)

    def _cancel_reply(self, reason: str) -> None:
        reply, self.reply = self.reply, None
        self.barge_in.drop()
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
