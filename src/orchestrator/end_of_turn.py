"""When a pause ends the turn: the completeness judge and the silence each verdict waits.

A fixed silence is a bad judge of the end of a turn: long enough for "I'd like a table for …
two" makes every reply wait, short enough to reply fast cuts in on that pause. When silence
begins the speculative transcript is already being made; a judge reads it and says whether the
utterance sounds finished. The turn then ends after `complete_ms` of silence if it does,
`incomplete_ms` if it sounds unfinished, `unsure_ms` if the judge cannot tell. Until the
transcript arrives the segmenter's own hangover (`vad.hangover_ms`) applies, so a slow
recognizer never makes a turn wait longer than the silence policy would.

`policy: silence` keeps the fixed hangover (no judge). The judge is a protocol: `RuleJudge`
reads Whisper's text (its trailing punctuation and the last word); an audio model can stand
behind the same protocol where measurements show it helps.
"""

from __future__ import annotations

import enum
import re
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Verdict(enum.Enum):
    """What a judge makes of an utterance so far."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNSURE = "unsure"


class CompletenessJudge(Protocol):
    """Judges whether a transcript sounds like a finished turn."""

    name: str

    def judge(self, text: str) -> Verdict:
        """The verdict on `text` (a transcript that may be cut mid-sentence)."""
        ...


class EndOfTurnConfig(BaseModel):
    """`pipeline.end_of_turn`: how long a pause ends the turn."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["semantic", "silence"] = Field(
        "silence", description="semantic: the judge picks the silence; silence: vad.hangover_ms"
    )
    complete_ms: int = Field(300, ge=60, le=5000, description="silence after a finished turn")
    incomplete_ms: int = Field(1200, ge=60, le=10000, description="silence after an unfinished")
    unsure_ms: int = Field(600, ge=60, le=10000, description="silence when the judge can't tell")

    def wait_ms(self, verdict: Verdict) -> int:
        """The silence that ends a turn judged `verdict`."""
        if verdict is Verdict.COMPLETE:
            return self.complete_ms
        if verdict is Verdict.INCOMPLETE:
            return self.incomplete_ms
        return self.unsure_ms


_UNFINISHED = """
and or but so because if when while that which whose whom than nor
although though unless until since whether
for to of in on at with from by about into onto over under after before between through
without within during against toward towards around near across behind beside upon via per
a an the my your his her its our their these those some every another
um uh er erm hmm uhm mm ah eh
"""
# Weaker: a question may end on them ("Do we?", "Is it?"), so "?" and "!" win over these.
_UNFINISHED_UNLESS_ASKED = """
is are was were am be been being can could would should will shall may might must
do does did have has had gonna wanna
i we they he she i'm i'd i'll we're we'd they're let's
"""
_OPENERS = "so well okay ok alright right and but um uh hmm like"
_SUBORDINATING = """
if when whenever while although though because unless until once since after before whereas
"""
_ASKING = "can could would will shall should do does did is are was were may might"
# Whole answers Whisper often leaves unpunctuated when they are said alone.
_SHORT_ANSWERS = """
yes|no|yeah|yep|yup|nope|sure|thanks|thank you|no thanks|no thank you|yes please|correct
exactly|absolutely|of course|goodbye|bye|good night|that's all|that's it|never mind
"""


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words a finished English sentence almost never ends on: conjunctions, prepositions,
# articles and determiners, fillers.
UNFINISHED_WORDS = _word_set(_UNFINISHED)
UNFINISHED_UNLESS_ASKED = _word_set(_UNFINISHED_UNLESS_ASKED)
# A transcript that is only a filler or an opener is not a turn yet.
OPENERS = _word_set(_OPENERS)
# "Could you", "Do we": a question that has only begun.
ASKING = _word_set(_ASKING)
# A sentence opening on one of these is a dependent clause ("If it rains tomorrow."): alone it
# is usually the first half of a sentence cut at a comma pause, which Whisper closes with ".".
SUBORDINATING = _word_set(_SUBORDINATING)
SHORT_ANSWERS = frozenset(filter(None, (a.strip() for a in re.split(r"[|\n]", _SHORT_ANSWERS))))

_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"[.?!\u2026]+\s+")


def _dependent_clause(text: str) -> bool:
    """The last sentence opens on a subordinating word and has no comma after which a main
    clause could stand ("When you get to the station." yes; "When is it." and "If so, yes." no).
    """
    last = _SENTENCE_END.split(text.strip())[-1]
    words = _WORD.findall(last.lower())
    if len(words) < 2 or words[0] not in SUBORDINATING or "," in last:
        return False
    return words[1] not in ASKING  # "When can you come." is a question Whisper didn't mark


class RuleJudge:
    """Whisper's punctuation and the last word, in this order.

    1. `,` `;` `:` `-` `…` or `...` at the end: incomplete (a clause trailing off).
    2. The last word is one a sentence does not end on (UNFINISHED_WORDS: conjunctions,
       prepositions, articles, fillers), or the text is only an opener ("So", "Well"):
       incomplete, whatever the punctuation (Whisper often closes a cut-off clause with "."
       or even "?": "Can you send the report to?").
    3. `?` or `!` at the end: complete.
    4. The last word is one a question may end on but a statement rarely does (auxiliaries,
       modals, subject pronouns: "Do we?" vs "And then I"), or the text is a question that
       has only begun ("Could you"): incomplete.
    5. The last sentence is a dependent clause alone ("If it rains tomorrow.", "After the
       meeting."): unsure. A speaker's comma pause often comes right there, and Whisper ends
       the clause with "."; as a short answer it may be finished, hence unsure, not incomplete.
    6. `.` at the end, or the whole text is a short answer Whisper left unpunctuated ("Yes",
       "No thanks", SHORT_ANSWERS): complete; no punctuation at all: unsure.
    """

    name = "rules"

    def judge(self, text: str) -> Verdict:
        """See the class docstring."""
        stripped = text.strip()
        words = _WORD.findall(stripped.lower().replace("\u2019", "'"))
        if not words:
            return Verdict.UNSURE
        if stripped.endswith(("...", "\u2026", ",", ";", ":", "-", "\u2014")):
            return Verdict.INCOMPLETE
        if words[-1] in UNFINISHED_WORDS or all(word in OPENERS for word in words):
            return Verdict.INCOMPLETE
        if stripped.endswith(("?", "!")):
            return Verdict.COMPLETE
        if words[-1] in UNFINISHED_UNLESS_ASKED or (len(words) <= 2 and words[0] in ASKING):
            return Verdict.INCOMPLETE
        if _dependent_clause(stripped):
            return Verdict.UNSURE
        if stripped.endswith(".") or " ".join(words) in SHORT_ANSWERS:
            return Verdict.COMPLETE
        return Verdict.UNSURE
