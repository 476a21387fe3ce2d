"""The turn decisions, driven by scripted events on a fake clock: no sockets, models or sleeps."""

from __future__ import annotations

import numpy as np
import pytest

from voicefleet.orchestrator.decisions import TurnCore, TurnRules
from voicefleet.orchestrator.end_of_turn import EndOfTurnConfig
from voicefleet.orchestrator.protocol import (
    AudioCancel,
    AudioPause,
    ErrorEvent,
    TranscriptEvent,
)
from voicefleet.orchestrator.session import State
from voicefleet.orchestrator.turn_events import (
    CancelReply,
    CancelTranscription,
    Close,
    CommitReply,
    Decided,
    Heard,
    HoldReply,
    InterruptRequest,
    Measured,
    ReleaseReply,
    Remember,
    ReplyAudible,
    ReplyEnded,
    ReportTurn,
    Send,
    SetHangover,
    StartReply,
    TextInput,
    Tick,
    Transcribe,
    Transcribed,
    TurnAction,
    TurnEnded,
    TurnEvent,
    Voicing,
)
from voicefleet.orchestrator.vad import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted

RULES = TurnRules(onset_ms=100, barge_in_min_speech_ms=250, false_alarm_ms=120)
AUDIO = np.zeros(320, np.int16)


class Script:
    """A session's core with a fake clock; every action it returned, in order."""

    def __init__(self, rules: TurnRules = RULES) -> None:
        self.now = 0.0
        self.core = TurnCore("test", rules, self.now)
        self.actions: list[TurnAction] = self.core.start()

    def event(self, event: TurnEvent) -> list[TurnAction]:
        out = self.core.handle(event, self.now)
        self.actions += out
        return out

    def frames(self, voiced: bool, ms: int) -> list[TurnAction]:
        """`ms` of microphone frames, in real time."""
        out: list[TurnAction] = []
        for _ in range(ms // 20):
            self.now = round(self.now + 0.02, 3)
            out += self.event(Voicing(self.now, voiced))
        return out

    def wait(self, seconds: float) -> list[TurnAction]:
        self.now += seconds
        return self.event(Tick())

    def speaking(self, text: str = "A long reply.", mode: str = "say") -> int:
        """A reply the person is hearing; returns its id."""
        start = self.event(TextInput(text, mode))
        reply = only(start, StartReply)
        assert reply.committed
        self.event(ReplyAudible(reply.reply))
        assert self.core.state is State.SPEAKING
        return reply.reply

    @property
    def state(self) -> State:
        return self.core.state

    def sent(self, since: int = 0) -> list[str]:
        """Types of the client events sent, state changes left out."""
        return [
            a.message.type
            for a in self.actions[since:]
            if isinstance(a, Send) and a.message.type != "state"
        ]


def only(actions: list[TurnAction], kind: type) -> object:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in {actions}"
    return found[0]


def of(actions: list[TurnAction], kind: type) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


def messages(actions: list[TurnAction]) -> list[object]:
    """Client events sent, state changes left out."""
    return [a.message for a in actions if isinstance(a, Send) and a.message.type != "state"]


# -- barge-in ----------------------------------------------------------------------------


@pytest.mark.parametrize("gap_ms", [100, 300, 500, 900])
def test_a_cough_never_hides_the_interruption_after_it(gap_ms: int) -> None:
    script = Script()
    reply = script.speaking()
    mark = len(script.actions)
    script.frames(True, 160)  # a cough
    script.frames(False, gap_ms)
    script.frames(True, 400)  # the person really talks
    if gap_ms < RULES.false_alarm_ms:
        # Too short a gap to end the candidate: one pause, then the cancel.
        assert script.sent(mark) == ["audio_pause", "audio_cancel"]
    else:
        assert script.sent(mark) == ["audio_pause", "audio_resume", "audio_pause", "audio_cancel"]
    assert script.state is State.LISTENING
    cancels = of(script.actions[mark:], CancelReply)
    assert [(c.reply, c.reason) for c in cancels] == [(reply, "barge_in")]


def test_two_coughs_pause_and_resume_twice_and_the_reply_goes_on() -> None:
    script = Script()
    reply = script.speaking()
    mark = len(script.actions)
    for _ in range(2):
        script.frames(True, 160)
        script.frames(False, 300)
    assert script.sent(mark) == ["audio_pause", "audio_resume"] * 2
    assert [type(a) for a in script.actions[mark:] if isinstance(a, HoldReply | ReleaseReply)] == [
        HoldReply,
        ReleaseReply,
        HoldReply,
        ReleaseReply,
    ]
    assert not of(script.actions[mark:], CancelReply)
    assert script.state is State.SPEAKING
    assert script.core.reply is not None and script.core.reply.id == reply


def test_barge_in_pauses_at_onset_and_measures_it_from_the_first_voiced_frame() -> None:
    script = Script()
    script.speaking()
    script.frames(False, 200)
    out = script.frames(True, 100)
    assert [type(m) for m in messages(out)] == [AudioPause]
    measured = only(out, Measured)
    assert isinstance(measured, Measured) and measured.name == "barge_in_ms"
    assert measured.value_ms == pytest.approx(100, abs=1)
    assert script.state is State.BARGED_IN
    assert [d.decision for d in of(out, Decided)] == ["barge_in_candidate"]


def test_speech_before_the_reply_is_audible_holds_it_silently_then_drops_it() -> None:
    script = Script()
    start = script.event(TextInput("Tell me more.", "answer"))
    reply = only(start, StartReply)
    assert script.state is State.WAITING_FOR_INPUT
    mark = len(script.actions)
    held = script.frames(True, 120)
    assert [type(a) for a in held if isinstance(a, HoldReply)] == [HoldReply]
    assert script.sent(mark) == [], "nothing was audible: nothing to pause at the client"
    script.frames(True, 200)
    assert of(script.actions[mark:], CancelReply)[0].reply == reply.reply
    assert script.sent(mark) == []
    assert script.state is State.LISTENING


def test_speech_in_the_first_100_ms_of_a_reply_pauses_it() -> None:
    script = Script()
    start = script.event(TextInput("Tell me more.", "say"))
    reply = only(start, StartReply)
    script.frames(True, 60)  # the person started talking just before the audio
    script.event(ReplyAudible(reply.reply))
    mark = len(script.actions)
    script.frames(True, 40)
    assert script.sent(mark) == ["audio_pause"]
    assert script.state is State.BARGED_IN
    script.frames(True, 200)
    assert script.sent(mark) == ["audio_pause", "audio_cancel"]


def test_a_frame_that_left_just_before_the_hold_still_pauses_the_client() -> None:
    script = Script()
    reply = only(script.event(TextInput("Tell me more.", "say")), StartReply)
    script.frames(True, 100)  # held while WAITING: nothing audible yet
    mark = len(script.actions)
    script.event(ReplyAudible(reply.reply))  # ...but its first frame had already gone out
    assert script.sent(mark) == ["audio_pause"]
    assert script.state is State.BARGED_IN


@pytest.mark.parametrize("real", [True, False])
def test_speech_as_the_last_frame_is_sent_is_decided_before_the_turn_ends(real: bool) -> None:
    script = Script()
    reply = script.speaking("Hello there.", mode="answer")
    script.frames(True, 100)  # candidate: paused
    mark = len(script.actions)
    script.event(ReplyEnded(reply, completed=True))  # the tail is paused at the client
    assert not of(script.actions[mark:], ReportTurn), "the turn waits for the candidate"
    if real:
        script.frames(True, 200)
        assert script.sent(mark) == ["audio_cancel"]
    else:
        script.frames(False, 140)
        assert script.sent(mark) == ["audio_resume"]
    assert script.state is State.LISTENING
    assert [r.reply for r in of(script.actions[mark:], Remember)] == [reply]
    assert [r.reply for r in of(script.actions[mark:], ReportTurn)] == [reply]


def test_interrupt_while_a_barge_in_is_pending_cancels_once() -> None:
    script = Script()
    reply = script.speaking()
    script.frames(True, 100)
    mark = len(script.actions)
    script.event(InterruptRequest())
    script.frames(True, 400)
    assert script.sent(mark) == ["audio_cancel"]
    cancel = only(script.actions[mark:], CancelReply)
    assert isinstance(cancel, CancelReply) and (cancel.reply, cancel.reason) == (
        reply,
        "interrupt",
    )
    assert script.state is State.LISTENING


def test_voice_with_no_reply_is_never_a_barge_in() -> None:
    script = Script()
    out = script.frames(True, 600)
    assert not of(out, HoldReply) and script.sent() == []


# -- listening and speculation -------------------------------------------------------------


def _utterance(script: Script) -> None:
    script.event(Heard(SpeechStarted(at=script.now)))
    script.frames(True, 400)


def test_speculation_is_prepared_held_then_committed_at_the_end_of_the_turn() -> None:
    script = Script()
    _utterance(script)
    job = only(script.event(Heard(SpeechPaused(at=script.now, audio=AUDIO))), Transcribe)
    held = only(script.event(Transcribed(job.job, "What time is it?")), StartReply)
    assert isinstance(held, StartReply) and not held.committed
    assert script.state is State.LISTENING
    script.now += 0.5
    out = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.6, audio=AUDIO, voiced_s=0.4)))
    commit = only(out, CommitReply)
    assert isinstance(commit, CommitReply) and commit.reply == held.reply and commit.turn == 1
    assert commit.speech_end_at == pytest.approx(script.now - 0.6)
    assert messages(out) == [TranscriptEvent(text="What time is it?", final=True, turn=1)]
    assert script.state is State.WAITING_FOR_INPUT


def test_a_dropped_speculation_is_cancelled_and_never_remembered() -> None:
    script = Script()
    _utterance(script)
    job = only(script.event(Heard(SpeechPaused(at=script.now, audio=AUDIO))), Transcribe)
    held = only(script.event(Transcribed(job.job, "What is the")), StartReply)
    out = script.event(Heard(SpeechResumed(at=script.now)))
    assert [c.reply for c in of(out, CancelReply)] == [held.reply]
    assert [d.decision for d in of(out, Decided)] == ["speculation_dropped"]
    script.frames(True, 300)
    end = script.event(Heard(SpeechEnded(at=2.0, decided_at=2.6, audio=AUDIO, voiced_s=1.0)))
    final_job = only(end, Transcribe)
    start = only(script.event(Transcribed(final_job.job, "What is the weather like?")), StartReply)
    assert isinstance(start, StartReply) and start.committed and start.turn == 1
    script.event(ReplyAudible(start.reply))
    script.event(ReplyEnded(start.reply, completed=True))
    remembered = of(script.actions, Remember)
    assert [(r.user, r.reply) for r in remembered] == [("What is the weather like?", start.reply)]


def test_a_speculation_dropped_before_its_text_came_takes_its_job_out_of_the_asr_queue() -> None:
    script = Script()
    _utterance(script)
    job = only(script.event(Heard(SpeechPaused(at=script.now, audio=AUDIO))), Transcribe)
    out = script.event(Heard(SpeechResumed(at=script.now)))
    assert [c.job for c in of(out, CancelTranscription)] == [job.job]
    # A speculation whose text is in has no job left to cancel.
    script.frames(True, 200)
    again = only(script.event(Heard(SpeechPaused(at=script.now, audio=AUDIO))), Transcribe)
    script.event(Transcribed(again.job, "What is the"))
    assert not of(script.event(Heard(SpeechResumed(at=script.now))), CancelTranscription)


def test_the_turn_waits_for_a_speculative_transcript_still_running() -> None:
    script = Script()
    _utterance(script)
    job = only(script.event(Heard(SpeechPaused(at=script.now, audio=AUDIO))), Transcribe)
    ended = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.6, audio=AUDIO, voiced_s=0.4)))
    assert not of(ended, Transcribe), "the running speculation is the turn's transcript"
    decided = script.now
    script.now += 0.3  # the transcript comes 300 ms after the hangover ended
    start = only(script.event(Transcribed(job.job, "Hello.")), StartReply)
    assert isinstance(start, StartReply) and start.committed
    # Time to first audio counts from the end of speech: the 300 ms wait is in it.
    assert start.speech_end_at == pytest.approx(decided - 0.6)


def test_a_transcript_after_the_hangover_counts_from_the_end_of_speech() -> None:
    script = Script()
    _utterance(script)
    end = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.6, audio=AUDIO, voiced_s=0.4)))
    decided = script.now
    script.now += 0.45
    start = only(script.event(Transcribed(only(end, Transcribe).job, "Hello.")), StartReply)
    assert isinstance(start, StartReply) and start.speech_end_at == pytest.approx(decided - 0.6)
    asr = [m.value_ms for m in of(script.actions, Measured) if m.name == "asr_ms"]
    assert asr == [pytest.approx(450)]


def test_an_empty_transcript_is_no_turn_and_asr_failure_is_reported() -> None:
    script = Script()
    _utterance(script)
    end = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.6, audio=AUDIO, voiced_s=0.4)))
    assert not of(script.event(Transcribed(only(end, Transcribe).job, "  ")), StartReply)
    assert script.state is State.LISTENING and script.core.turn == 0
    _utterance(script)
    end = script.event(Heard(SpeechEnded(at=3.0, decided_at=3.6, audio=AUDIO, voiced_s=0.4)))
    out = script.event(Transcribed(only(end, Transcribe).job, "", "model crashed"))
    errors = messages(out)
    assert len(errors) == 1 and isinstance(errors[0], ErrorEvent)
    assert errors[0].code == "asr_failed"
    assert script.state is State.LISTENING


# -- history and limits --------------------------------------------------------------------


def test_history_is_written_when_the_turn_ends_however_it_ends() -> None:
    script = Script()
    first = script.speaking("Tell me a story.", mode="answer")
    script.frames(True, 300)  # barge-in
    second = script.speaking("Say it.", mode="say")
    script.event(ReplyEnded(second, completed=True))
    assert [(r.user, r.reply) for r in of(script.actions, Remember)] == [
        ("Tell me a story.", first)
    ], "spoken-as-is text is not a user turn"


def test_idle_timeout_and_max_turns_close_the_session() -> None:
    script = Script(TurnRules(idle_timeout_s=10, max_turns=1))
    assert not of(script.wait(5), Close)
    closed = only(script.wait(6), Close)
    assert isinstance(closed, Close) and closed.reason == "idle_timeout"
    assert script.state is State.TERMINATED
    assert script.event(TextInput("late", "say")) == []

    script = Script(TurnRules(max_turns=1))
    reply = script.speaking()
    closed = only(script.event(ReplyEnded(reply, completed=True)), Close)
    assert isinstance(closed, Close) and closed.reason == "max_turns"


def test_a_cancelled_reply_reports_and_cancels_the_client_playback() -> None:
    script = Script()
    reply = script.speaking("Go on.", mode="answer")
    out = script.event(TextInput("New question.", "answer"))
    assert [type(m) for m in messages(out)] == [AudioCancel]
    assert [c.reply for c in of(out, CancelReply)] == [reply]
    assert [r.reply for r in of(out, ReportTurn)] == [reply]
    assert [r.reply for r in of(out, Remember)] == [reply]
    assert [s.turn for s in of(out, StartReply)] == [2]
    assert script.state is State.WAITING_FOR_INPUT


# -- end of turn by meaning ----------------------------------------------------------------

SEMANTIC = TurnRules(
    onset_ms=100,
    barge_in_min_speech_ms=250,
    false_alarm_ms=120,
    end_of_turn=EndOfTurnConfig(
        policy="semantic", complete_ms=200, incomplete_ms=1200, unsure_ms=600
    ),
)


def _paused_with(script: Script, text: str) -> tuple[float, list[TurnAction]]:
    _utterance(script)
    pause_at = script.now
    job = only(script.event(Heard(SpeechPaused(at=pause_at, audio=AUDIO))), Transcribe)
    return pause_at, script.event(Transcribed(job.job, text))


@pytest.mark.parametrize(
    ("text", "wait_ms", "verdict"),
    [
        ("What time is it?", 200, "complete"),
        ("I would like to book a table for", 1200, "incomplete"),
        ("hello there", 600, "unsure"),
    ],
)
def test_the_speculative_transcript_sets_the_silence_that_ends_the_turn(
    text: str, wait_ms: int, verdict: str
) -> None:
    script = Script(SEMANTIC)
    pause_at, out = _paused_with(script, text)
    hangover = only(out, SetHangover)
    assert hangover == SetHangover(wait_ms, pause_at)
    assert [d.detail for d in of(out, Decided)] == [f"{verdict}: {wait_ms} ms"]
    ended = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.2, audio=AUDIO, voiced_s=0.4)))
    assert of(ended, TurnEnded) == [TurnEnded(f"semantic/{verdict}")]
    assert only(ended, CommitReply)


def test_the_silence_policy_sets_no_hangover() -> None:
    script = Script()
    _, out = _paused_with(script, "What time is it?")
    assert not of(out, SetHangover)
    ended = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.6, audio=AUDIO, voiced_s=0.4)))
    assert of(ended, TurnEnded) == [TurnEnded("silence")]


def test_speech_soon_after_an_early_end_is_the_same_turn_going_on() -> None:
    script = Script(SEMANTIC)
    _paused_with(script, "Book a table for two.")
    end_at = script.now - 0.12
    script.now += 0.1
    out = script.event(
        Heard(SpeechEnded(at=end_at, decided_at=end_at + 0.2, audio=AUDIO, voiced_s=1))
    )
    first = only(out, CommitReply)
    script.event(ReplyAudible(first.reply))
    script.frames(False, 300)
    mark = len(script.actions)
    script.frames(True, 400)  # the person goes on, 0.5 s after the end: a barge-in
    assert script.sent(mark) == ["audio_pause", "audio_cancel"]
    assert [d.decision for d in of(script.actions[mark:], Decided)][-1:] == ["turn_continued"]
    assert not of(script.actions, Remember), "neither half is history yet"
    _, out = _paused_with(script, "At seven.")
    held = only(out, StartReply)
    assert held.text == "Book a table for two. At seven."
    ended = script.event(Heard(SpeechEnded(at=9.0, decided_at=9.2, audio=AUDIO, voiced_s=1)))
    assert messages(ended) == [
        TranscriptEvent(text="Book a table for two. At seven.", final=True, turn=2)
    ]
    script.event(ReplyAudible(held.reply))
    script.event(ReplyEnded(held.reply, completed=True))
    assert [r.user for r in of(script.actions, Remember)] == ["Book a table for two. At seven."]


def test_an_interruption_long_after_the_end_is_a_new_turn() -> None:
    script = Script(SEMANTIC)
    _paused_with(script, "Tell me a story.")
    out = script.event(Heard(SpeechEnded(at=1.0, decided_at=1.2, audio=AUDIO, voiced_s=1)))
    reply = only(out, CommitReply).reply
    script.event(ReplyAudible(reply))
    script.frames(False, 200)
    script.now = 5.0  # 4 s into the story
    script.frames(True, 400)
    assert script.sent()[-2:] == ["audio_pause", "audio_cancel"]
    assert "turn_continued" not in [d.decision for d in of(script.actions, Decided)]
    assert [r.user for r in of(script.actions, Remember)] == ["Tell me a story."]
