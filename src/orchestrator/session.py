"""The conversation state machine: an explicit transition table; anything else is a bug.

- IDLE -> LISTENING: the client said hello.
- LISTENING -> WAITING_FOR_INPUT: the person's turn is over (an utterance with words, or text).
- WAITING_FOR_INPUT -> SPEAKING: the reply's first audio goes out.
- WAITING_FOR_INPUT -> LISTENING: nothing to say (empty reply, error), or the person spoke on
  before the reply was heard (a barge-in before its first frame).
- SPEAKING -> BARGED_IN: the person spoke over the agent; playback paused.
- BARGED_IN -> SPEAKING: it was noise; playback resumes where it paused.
- BARGED_IN -> LISTENING: a real interruption; the reply is dropped.
- SPEAKING -> LISTENING: the reply finished, or the client interrupted.
- any state -> TERMINATED: hang-up, idle timeout, duration or turn limits, transport loss.

WAITING_FOR_INPUT means the agent waits for its reply's input: the final transcript, the
responder's text and the first synthesized audio.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class State(enum.Enum):
    """Where a session is."""

    IDLE = "idle"
    LISTENING = "listening"
    WAITING_FOR_INPUT = "waiting_for_input"
    SPEAKING = "speaking"
    BARGED_IN = "barged_in"
    TERMINATED = "terminated"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.LISTENING}),
    State.LISTENING: frozenset({State.WAITING_FOR_INPUT}),
    State.WAITING_FOR_INPUT: frozenset({State.SPEAKING, State.LISTENING}),
    State.SPEAKING: frozenset({State.BARGED_IN, State.LISTENING}),
    State.BARGED_IN: frozenset({State.SPEAKING, State.LISTENING}),
    State.TERMINATED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A transition the table does not allow: a bug in the caller."""


@dataclass(frozen=True)
class Transition:
    """One observed move."""

    previous: State
    state: State
    reason: str


Observer = Callable[[Transition], None]


class SessionStateMachine:
    """Holds the state and tells observers (client event, metric, log) about each move."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.state = State.IDLE
        self._observers: list[Observer] = []

    def observe(self, observer: Observer) -> None:
        """Call `observer` after every transition."""
        self._observers.append(observer)

    def can(self, target: State) -> bool:
        """Whether `target` is reachable from here in one move."""
        if target is State.TERMINATED:
            return self.state is not State.TERMINATED
        return target in TRANSITIONS[self.state]

    def to(self, target: State, reason: str) -> Transition:
        """Move, or raise IllegalTransition."""
        if not self.can(target):
            raise IllegalTransition(
                f"session {self.session_id}: {self.state.value} -> {target.value} ({reason})"
            )
        move = Transition(self.state, target, reason)
        self.state = target
        log.info(
            "session %s: %s -> %s (%s)", self.session_id, move.previous.value, target.value, reason
        )
        for observer in self._observers:
            observer(move)
        return move
