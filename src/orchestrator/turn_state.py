"""The state the turn decisions keep, and the helpers every decision uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicefleet.orchestrator.barge_in import BargeInDetector
from voicefleet.orchestrator.end_of_turn import (
    CompletenessJudge,
    EndOfTurnConfig,
    RuleJudge,
    Verdict,
)
from voicefleet.orchestrator.protocol import StateChanged
from voicefleet.orchestrator.session import SessionStateMachine, State
from voicefleet.orchestrator.turn_events import (
    Decided,
    Moved,
    Remember,
    Send,
    StartReply,
    Transcribed,
    TurnAction,
)
from voicefleet.orchestrator.vad import SpeechEnded


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
    end_of_turn: EndOfTurnConfig = field(default_factory=lambda: EndOfTurnConfig(policy="silence"))
    judge: CompletenessJudge = field(default_factory=RuleJudge)
    tool_timeout_s: float = 10.0  # the longest wait for one tool call's result
    max_tool_result_bytes: int = 16_384
    filler_after_s: float = 0.0  # a wait this long gets a filler phrase; 0: never
    filler_phrases: tuple[str, ...] = ()

    @property
    def semantic(self) -> bool:
        """Whether the judge picks the silence that ends a turn."""
        return self.end_of_turn.policy == "semantic"


@dataclass
class ReplyState:
    id: int
    turn: int
    user: str  # what the person said ("" for spoken-as-is text: nothing to remember)
    audible: bool = False
    ended: bool = False  # sent its last frame while a barge-in candidate was pending
    has_text: bool = False  # the responder's first words came
    waiting_since: float | None = None  # for the first words or a tool call (fillers)
    filler_said: bool = False  # in the current wait


@dataclass
class Speculation:
    job: int
    text: str | None = None  # None while transcribing
    reply: ReplyState | None = None
    ending: SpeechEnded | None = None  # the turn ended; waiting for the text
    pause_at: float = 0.0  # stream seconds where the pause began
    verdict: Verdict | None = None  # the judge's, once the text is in (semantic policy)
    queued_ms: float = 0.0  # how long its transcription waited for the recognizer
    timed: Transcribed | None = None  # its result, for word timings


class CoreState:
    """What one session's decisions know; decisions live in the subclasses."""

    def __init__(self, session_id: str, rules: TurnRules, now: float) -> None:
        self.rules = rules
        self.machine = SessionStateMachine(session_id)
        self.turn = 0
        self.reply: ReplyState | None = None
        self.speculation: Speculation | None = None
        self.barge_in = BargeInDetector(
            rules.onset_ms, rules.barge_in_min_speech_ms, rules.false_alarm_ms
        )
        self.in_speech = False
        self._ending: tuple[int, SpeechEnded] | None = None  # a turn waiting for its ASR job
        self._ended_at = now  # when the last end of speech was decided
        # A turn the judge ended early: where its speech ended (stream s), and its text; speech
        # resuming soon after is the same turn going on (see SpeakingDecisions).
        self._released: tuple[float, str] | None = None
        self._carry = ""  # the words of a turn that went on, to prefix to its continuation
        self._ids = 0
        self._started = now
        self._last_activity = now
        self._out: list[TurnAction] = []

    @property
    def state(self) -> State:
        """Where the session is."""
        return self.machine.state

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

    def _start_reply(
        self, turn: int, text: str, mode: str, speech_end_at: float | None
    ) -> ReplyState:
        reply = ReplyState(self._next_id(), turn, text if mode == "answer" else "")
        committed = speech_end_at is not None
        self._do(StartReply(reply.id, turn, text, mode, committed, speech_end_at))
        return reply

    def _remember(self, reply: ReplyState) -> None:
        if reply.user:
            self._do(Remember(reply.user, reply.id))

    def _check_max_turns(self, reply: ReplyState) -> None:
        limit = self.rules.max_turns
        if limit and reply.turn >= limit and self.state is not State.TERMINATED:
            self._close("max_turns", f"the session reached max_turns={limit}")

    # -- limits --------------------------------------------------------------------------

    def _close(self, reason: str, message: str | None = None) -> None:
        raise NotImplementedError
