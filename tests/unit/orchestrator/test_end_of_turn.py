"""The completeness judge on a table of transcripts, and the silence each verdict waits."""

from __future__ import annotations

import pytest

from voicefleet.orchestrator.end_of_turn import EndOfTurnConfig, RuleJudge, Verdict

C, N, U = Verdict.COMPLETE, Verdict.INCOMPLETE, Verdict.UNSURE

TABLE = [
    # finished sentences, as Whisper punctuates them
    ("What is the weather like in Paris today?", C),
    ("Please book a table for two at seven.", C),
    ("Yes.", C),
    ("No!", C),
    ("Thank you so much.", C),
    ("What is the weather like?", C),
    ("Turn off the lights in the kitchen.", C),
    # cut off mid-clause: the last word gives it away, whatever the punctuation
    ("I would like to book a table for", N),
    ("I would like to book a table for.", N),
    ("I'd like to book a table for...", N),
    ("Can you tell me the", N),
    ("Send it to my", N),
    ("I was thinking that", N),
    ("We need bread and", N),
    ("Call me when", N),
    ("The meeting is at", N),
    ("What I want is", N),
    ("So, um", N),
    ("Could you", N),
    ("Can you send the report to?", N),
    ("Could you tell me the?", N),
    ("Please book a table for two at 7.", C),
    ("It costs 20.", C),
    ("Do we?", C),
    ("Thank you.", C),
    ("And then I", N),
    ("I\u2019m", N),
    # trailing punctuation Whisper uses for a clause that trails off
    ("I need to go to the station,", N),
    ("Well,", N),
    ("Let me think\u2026", N),
    ("The first thing is this:", N),
    ("So", N),
    ("Okay so", N),
    # a dependent clause alone: often the first half of a sentence cut at a comma pause
    ("If it rains tomorrow.", U),
    ("when you get to the station.", U),
    ("After the meeting.", U),
    ("Once upon a time.", U),
    ("Play some music. Because I like it.", U),
    ("If it rains tomorrow, we will stay at home.", C),
    ("When does the museum open?", C),
    ("When can you come.", C),
    ("I stayed at home because it rained.", C),
    ("Because.", N),  # the last word rules first
    ("If it rains tomorrow and", N),
    # nothing to go on
    ("", U),
    ("   ", U),
    ("...", U),
    ("book a table for two at seven", U),
    ("hello there", U),
    # a whole short answer, which Whisper often leaves unpunctuated
    ("Yes", C),
    ("no thank you", C),
    ("That's all", C),
    ("Exactly", C),
    ("Yes and", N),
    ("Yes I", N),
    ("Yes the second one", U),
]


@pytest.mark.parametrize(("text", "verdict"), TABLE)
def test_rule_judge(text: str, verdict: Verdict) -> None:
    assert RuleJudge().judge(text) is verdict


def test_each_verdict_waits_its_own_silence() -> None:
    config = EndOfTurnConfig(complete_ms=180, incomplete_ms=1300, unsure_ms=500)
    assert config.wait_ms(C) == 180
    assert config.wait_ms(N) == 1300
    assert config.wait_ms(U) == 500
    # Opt-in until it stops ending turns at a speaker's comma pause (bench/turns.py).
    assert EndOfTurnConfig().policy == "silence"


def test_settings_are_bounded() -> None:
    with pytest.raises(ValueError, match="complete_ms"):
        EndOfTurnConfig(complete_ms=10)
    with pytest.raises(ValueError, match="policy"):
        EndOfTurnConfig(policy="vibes")  # type: ignore[arg-type]
