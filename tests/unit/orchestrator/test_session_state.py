import pytest

from voicefleet.orchestrator.session import (
    TRANSITIONS,
    IllegalTransition,
    SessionStateMachine,
    State,
    Transition,
)


def test_a_full_conversation_follows_the_table_and_is_observed() -> None:
    machine = SessionStateMachine("s1")
    seen: list[Transition] = []
    machine.observe(seen.append)
    for target in (
        State.LISTENING,
        State.WAITING_FOR_INPUT,
        State.SPEAKING,
        State.BARGED_IN,
        State.SPEAKING,
        State.BARGED_IN,
        State.LISTENING,
        State.TERMINATED,
    ):
        machine.to(target, "test")
    assert [(t.previous, t.state) for t in seen][:3] == [
        (State.IDLE, State.LISTENING),
        (State.LISTENING, State.WAITING_FOR_INPUT),
        (State.WAITING_FOR_INPUT, State.SPEAKING),
    ]
    assert len(seen) == 8 and machine.state is State.TERMINATED


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], State.SPEAKING),
        ([State.LISTENING], State.SPEAKING),
        ([State.LISTENING], State.BARGED_IN),
        ([State.LISTENING, State.WAITING_FOR_INPUT], State.BARGED_IN),
        ([State.TERMINATED], State.LISTENING),
        ([State.TERMINATED], State.TERMINATED),
    ],
)
def test_illegal_transitions_raise(path: list[State], illegal: State) -> None:
    machine = SessionStateMachine("s2")
    for target in path:
        machine.to(target, "setup")
    with pytest.raises(IllegalTransition, match=illegal.value):
        machine.to(illegal, "bug")


def test_every_state_can_terminate_except_terminated() -> None:
    for state in State:
        machine = SessionStateMachine("s3")
        machine.state = state
        assert machine.can(State.TERMINATED) is (state is not State.TERMINATED)
    assert set(TRANSITIONS) == set(State)
