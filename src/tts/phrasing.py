"""Where a sentence may be cut between two words with the least harm to its phrasing.

A segment boundary restarts the voice: the model ends one synthesis and begins the next afresh.
Inside a sentence that is least audible where a speaker could pause anyway, before a word that
opens a phrase: a conjunction, a preposition, a relative or question word ("I booked a table |
for seven", "the train | that leaves at noon"), or, as a fallback, before a noun phrase
("makes fresh bread | every morning"). Never after a word that leans on the next one (an
article, a title, a number before its unit, an auxiliary), never inside a name such as "Barnes
and Noble". The segmenter also asks that a few words of the sentence remain after a cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


def _lexicon(words: str) -> frozenset[str]:
    """A set of words written as one whitespace-separated string."""
    return frozenset(words.split())


# Words a phrase can start with: a boundary may go before them.
_OPENERS = _lexicon(
    # conjunctions
    "and but or nor so yet because although though while whereas unless until since if whether"
    # relative and question words
    " that which who whom whose where when why how what whatever whenever wherever"
    # prepositions ("of", "as", "like", "per" and the particles up/out/off/down bind too tightly)
    " to for with without in into on onto at from about after before by during through"
    " throughout over under between among against across around toward towards within near"
    " behind beyond along via"
)
# Words that lean on the word after them: no boundary after these.
_LEANING = _lexicon(
    "a an the this these those my your his her its our their some any no every each all both either"
    " neither of not very too as such than more most less least much many few own same other"
    " another"
    # spelled numbers keep their unit ("twenty percent")
    " zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy"
    " eighty ninety hundred thousand million billion trillion half dozen"
)
_SPELLED_NUMBERS = _lexicon(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy"
    " eighty ninety hundred thousand million billion trillion"
)
_CONJUNCTIONS = _lexicon("and or but so yet because while although though whereas")
# What may follow "2 and" in one quantity ("2 and a half").
_FRACTION_WORDS = _lexicon("a an half quarter")
# Words that start a noun phrase: the only place for a cut that has no opener, since a plain
# boundary elsewhere may split an adjective from its noun ("delicious | bread").
_NOUN_PHRASE_STARTS = _lexicon(
    "a an the this these those my your his her its our their some any no every each all both"
    " several many few I we you he she they it me us him them"
)
# Auxiliaries lean on their verb ("I do | not", "we have | a"), but a phrase may follow them
# ("the meeting is | at noon").
_AUXILIARIES = _lexicon(
    "is are was were be been being am do does did have has had will would can could shall"
    " should may might must"
)
# Openers that also join the parts of a name ("Barnes and Noble", "Stratford upon Avon").
_NAME_JOINERS = _lexicon("and or on upon")
# "to" after these starts no phrase: it belongs to the word before ("going to", "have to").
_BEFORE_INFINITIVE = _lexicon(
    "going want wants wanted need needs needed have has had got able unable used ought"
    " supposed try tries tried trying like likes liked love loves due according next close"
    " happy glad ready sorry nice"
)
# Titles and abbreviations that a name or word must follow ("Mr. Smith", "Dr. Lee").
_TITLES = _lexicon("mr mrs ms dr prof sr jr st mt ft no vs approx dept fig")
_NUMBER_STARTS = "0123456789$\u20ac\u00a3\u00a5"
_CONTRACTION_AUX = re.compile(r"(?:n't|'s|'re|'m|'ll|'d|'ve)$")
_EDGE_PUNCTUATION = "\"'()[]{}\u201c\u201d\u2018\u2019\u00ab\u00bb"
_WORD = re.compile(r"\S+")
_SPEAKABLE = re.compile(r"\w")


@dataclass(frozen=True)
class Word:
    """A whitespace-delimited token with a letter or digit in it, and its span in the text."""

    text: str
    start: int
    end: int

    @property
    def bare(self) -> str:
        """Lowercase, without surrounding quotes, brackets or trailing punctuation."""
        return self.text.strip(_EDGE_PUNCTUATION).rstrip(".,;:!?…").lower()

    @property
    def capitalized(self) -> bool:
        """Starts with a capital letter, like a name ("I" and its contractions do not count)."""
        text = self.text.lstrip(_EDGE_PUNCTUATION)
        return bool(text) and text[0].isupper() and self.bare not in {"i", "i'm", "i'll", "i'd"}


def words_in(text: str) -> list[Word]:
    """The speakable words of a text, in order."""
    return [
        Word(match.group(), match.start(), match.end())
        for match in _WORD.finditer(text)
        if _SPEAKABLE.search(match.group())
    ]


def may_cut_before(words: Sequence[Word], index: int, *, plain: bool) -> bool:
    """Whether a segment may end just before words[index] (with a word after it).

    Before an opening word (conjunction, preposition, relative word); if `plain`, also before
    a word that starts a noun phrase (an article, determiner, pronoun or number). Never where it
    would split a name, a number and its unit, or a word that leans on the next.
    """
    before, word, after = words[index - 1], words[index], words[index + 1]
    if _leans_forward(before) and not _number_ends_before(before, word, after):
        return False
    if word.bare in _OPENERS:
        # "Barnes and Noble" (a capitalized first word of the sentence is no sign of a name)
        if before.capitalized and index > 1 and word.bare in _NAME_JOINERS and after.capitalized:
            return False
        return not (word.bare == "to" and before.bare in _BEFORE_INFINITIVE)
    starts_noun_phrase = word.bare in _NOUN_PHRASE_STARTS or word.text[0] in _NUMBER_STARTS
    return plain and starts_noun_phrase and before.bare not in _AUXILIARIES  # "we have | a"


def _number_ends_before(before: Word, word: Word, after: Word) -> bool:
    """A number is over when a conjunction follows that does not go on counting: "48213 | and
    the total"; but not "5 and 6", "2 and a half" (nor "5 | in the evening": a preposition
    after a number is often part of one expression)."""
    if not _is_number(before) or word.bare not in _CONJUNCTIONS:
        return False
    return not (_is_number(after) or after.bare in _FRACTION_WORDS)


def _is_number(word: Word) -> bool:
    return any(char.isdigit() for char in word.text) or word.bare in _SPELLED_NUMBERS


def _leans_forward(word: Word) -> bool:
    bare = word.bare
    if bare in _LEANING or bare in _OPENERS or _CONTRACTION_AUX.search(bare):
        return True
    if any(char.isdigit() for char in word.text) or word.text[0] in _NUMBER_STARTS + "#@":
        return True  # "5 km", "$20 million", "#3 on the list"
    if word.text.endswith("."):
        # "Mr. Smith", "J. Doe", "e.g. this": a dot that does not end the sentence
        return bare in _TITLES or len(bare) == 1 or "." in bare
    return False
