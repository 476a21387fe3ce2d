"""Incremental text segmentation: whole sentences, and the first clause of a stream early.

Text may arrive a token at a time. A segment is released as soon as its end is certain
(terminal punctuation followed by whitespace), so synthesis of the first sentence starts before
the rest of the text exists. The first segment of a stream is cut at its first clause boundary
(",", ";", ":", a dash) once it holds enough words: a short clause synthesizes in about half the
time of the whole sentence, which is what the listener waits for.

Every segment carries its character span in the stream's input (the concatenation of the chunks
pushed so far): the worker puts it on each frame, so a client knows what a frame speaks without
re-running this code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Segment:
    """Speakable text (whitespace collapsed) and its span [start, end) in the stream's input."""

    text: str
    start: int
    end: int


class TextSegmenter:
    """Turns a stream of text chunks into speakable segments."""

    def __init__(self, first_clause_min_words: int = 1, max_segment_chars: int = 400) -> None:
        self.first_clause_min_words = first_clause_min_words
        self.max_segment_chars = max_segment_chars
        self._buffer = ""
        self._consumed = 0  # input characters before the buffer
        self._emitted = 0

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
        """End of input: return whatever is left as a final segment."""
        segments: list[Segment] = []
        self._take(len(self._buffer), segments)
        return segments

    def _take(self, cut: int, out: list[Segment]) -> None:
        raw, self._buffer = self._buffer[:cut], self._buffer[cut:]
        start = self._consumed + len(raw) - len(raw.lstrip())
        end = self._consumed + len(raw.rstrip())
        self._consumed += cut
        text = " ".join(raw.split())
        if _SPEAKABLE.search(text):
            out.append(Segment(text, start, end))
            self._emitted += 1

    def _next_cut(self) -> int | None:
        cuts = [self._sentence_cut()]
        if self._emitted == 0:
            cuts.append(self._clause_cut())
        found = [cut for cut in cuts if cut is not None]
        if found:
            return min(found)
        if len(self._buffer) > self.max_segment_chars:
            # No punctuation for too long: cut at the last space before the limit.
            space = self._buffer.rfind(" ", 0, self.max_segment_chars)
            return space if space > 0 else self.max_segment_chars
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
