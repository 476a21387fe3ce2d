"""Incremental text segmentation: whole sentences, and the first few words of a stream early.

Text may arrive a token at a time. A segment is released as soon as its end is certain
(terminal punctuation followed by whitespace), so synthesis of the first sentence starts before
the rest of the text exists. The listener waits only for the synthesis of the first segment, so
the first segment of a stream is cut short (`FirstSegment`): at its first clause boundary (",",
";", ":", a dash) once it holds enough words, or, in "words" mode, earlier still, between two
words where the phrasing allows it (phrasing.py), whichever comes first. Later segments are whole
sentences.

A cut is made only once nothing before it can change: a cut before a word waits until that word
and the rest of the sentence's first words are complete (followed by whitespace, or the end of
the input), and a clause cut waits while a word cut before it is still undecided. So the
segments are the same however the text was chunked.

Every segment carries its character span in the stream's input (the concatenation of the chunks
pushed so far): the worker puts it on each frame, so a client knows what a frame speaks without
re-running this code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from voicefleet.tts.phrasing import may_cut_before, words_in

_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "approx",
        "no",
        "dept",
        "fig",
        "inc",
        "ltd",
        "co",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[\u2014\u2013-])(?=\s)")
_SPEAKABLE = re.compile(r"\w")
# A word cut leaves at least this many words of the sentence for the next segment: a shorter
# rest saves little synthesis time and is where a restart of the voice is most audible.
_MIN_REST_WORDS = 3
# From max_words on, a cut before a noun phrase is looked for this many words further.
_PLAIN_SEARCH_WORDS = 4

FirstSegmentMode = Literal["words", "clause", "sentence"]


@dataclass(frozen=True)
class FirstSegment:
    """How the first segment of a stream is cut: its synthesis is what the listener waits for.

    "sentence": the whole first sentence. "clause": up to the first clause boundary, else the
    sentence. "words" (default): as "clause", or earlier at a word boundary before a phrase
    opener (conjunction, preposition, relative word) after min_words..max_words words, else
    from max_words words on also before a noun phrase (article, determiner, pronoun, number);
    whichever comes first.
    """

    mode: FirstSegmentMode = "words"
    min_words: int = 3
    max_words: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self}")


@dataclass(frozen=True)
class Segment:
    """Speakable text (whitespace collapsed) and its span [start, end) in the stream's input.

    `continues` marks a segment cut between two words of one sentence: the next segment goes on
    with no pause, so the renderer trims the silence a synthesis leaves at that join.
    """

    text: str
    start: int
    end: int
    continues: bool = False


class _Cut(NamedTuple):
    at: int
    continues: bool = False


@dataclass(frozen=True)
class _Undecided:
    """A word cut may still come after `after`: the words it depends on are not all in yet."""

    after: int


class TextSegmenter:
    """Turns a stream of text chunks into speakable segments."""

    def __init__(
        self,
        first_clause_min_words: int = 1,
        max_segment_chars: int = 400,
        first_segment: FirstSegment | None = None,
    ) -> None:
        self.first_clause_min_words = first_clause_min_words
        self.max_segment_chars = max_segment_chars
        self.first_segment = first_segment or FirstSegment()
        self._buffer = ""
        self._consumed = 0  # input characters before the buffer
        self._emitted = 0
        self._ending = False  # flush(): the end of the buffer ends the last word and sentence

    @property
    def pending_text(self) -> str:
        """Text received but not yet released as a segment."""
        return self._buffer

    def push(self, text: str) -> list[Segment]:
        """Add text; return the segments now complete."""
        self._buffer += text
        segments: list[Segment] = []
        while (cut := self._next_cut()) is not None:
            self._take(cut, segments)
        return segments

    def flush(self) -> list[Segment]:
        """End of input: return the segments left (the last one whatever its end)."""
        self._ending = True
        segments: list[Segment] = []
        while (cut := self._next_cut()) is not None:
            self._take(cut, segments)
        self._take(_Cut(len(self._buffer)), segments)
        self._ending = False
        return segments

    def _take(self, cut: _Cut, out: list[Segment]) -> None:
        raw, self._buffer = self._buffer[: cut.at], self._buffer[cut.at :]
        start = self._consumed + len(raw) - len(raw.lstrip())
        end = self._consumed + len(raw.rstrip())
        self._consumed += cut.at
        text = " ".join(raw.split())
        if _SPEAKABLE.search(text):
            out.append(Segment(text, start, end, cut.continues))
            self._emitted += 1

    def _next_cut(self) -> _Cut | None:
        sentence = self._sentence_cut()
        cuts = [] if sentence is None else [_Cut(sentence)]
        if self._emitted == 0:
            first = self._first_segment_cuts(sentence)
            if first is None:
                return None
            cuts += first
        if cuts:
            return min(cuts)
        if len(self._buffer) > self.max_segment_chars:
            # No punctuation for too long: cut at the last space before the limit.
            space = self._buffer.rfind(" ", 0, self.max_segment_chars)
            return _Cut(space if space > 0 else self.max_segment_chars, continues=True)
        return None

    def _first_segment_cuts(self, sentence: int | None) -> list[_Cut] | None:
        """The first segment's clause and word cuts; None: wait, a word cut is undecided."""
        mode = self.first_segment.mode
        clause = self._clause_cut() if mode != "sentence" else None
        cuts = [] if clause is None else [_Cut(clause)]
        if mode != "words":
            return cuts
        word = self._word_cut(sentence)
        if isinstance(word, _Undecided):
            # The clause cut stands only if no word cut could come before it.
            return None if clause is not None and clause > word.after else cuts
        return cuts if word is None else [*cuts, _Cut(word, continues=True)]

    def _word_cut(self, sentence: int | None) -> int | _Undecided | None:
        """Where the first sentence may end its first segment between two words.

        Decided once the words it depends on are complete: the candidate word and the rest of
        the sentence's minimum (a known sentence end, or flush(), decides every candidate).
        """
        rule = self.first_segment
        ends = len(self._buffer) if sentence is None and self._ending else sentence
        words = words_in(self._buffer if ends is None else self._buffer[:ends])
        if ends is None and words and words[-1].end == len(self._buffer):
            words.pop()  # still arriving: its next character may not be whitespace
        for index in range(rule.min_words, rule.max_words + _PLAIN_SEARCH_WORDS + 1):
            if len(words) - index < _MIN_REST_WORDS:
                if ends is not None:
                    return None  # the sentence is too short for a word cut here or later
                return _Undecided(words[min(index, len(words)) - 1].end if words else 0)
            if may_cut_before(words, index, plain=index >= rule.max_words):
                return words[index].start
        return None

    def _sentence_cut(self) -> int | None:
        for match in _SENTENCE_END.finditer(self._buffer):
            if not self._is_abbreviation(match.start()):
                return match.end()
        return None

    def _clause_cut(self) -> int | None:
        for match in _CLAUSE_END.finditer(self._buffer):
            if len(self._buffer[: match.start()].split()) >= self.first_clause_min_words:
                return match.end()
        return None

    def _is_abbreviation(self, dot_index: int) -> bool:
        if self._buffer[dot_index] != ".":
            return False
        words = self._buffer[:dot_index].split()
        if not words:
            return False
        word = words[-1].lower().lstrip("(\"'")
        # "e.g", "p.m", "U.S": an inner dot marks an abbreviation, as does a lone initial.
        return word in _ABBREVIATIONS or "." in word or (len(word) == 1 and word.isalpha())
