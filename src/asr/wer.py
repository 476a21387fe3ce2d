"""Word error rate between a reference and a hypothesis, after light text normalization."""

from __future__ import annotations

import re
import unicodedata

# Apostrophes inside words ("don't") and decimal points ("3.5") are kept; any other
# non-word character separates words.
_WORD = re.compile(r"\d+(?:\.\d+)+|[a-z0-9]+(?:'[a-z0-9]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalize_words(text: str) -> list[str]:
    """Lowercase words without punctuation or accents; numbers stay as written ("2" != "two")."""
    folded = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES).lower())
    ascii_text = folded.encode("ascii", "ignore").decode("ascii")
    # "1,000" is one number, not two.
    ascii_text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", ascii_text)
    return _WORD.findall(ascii_text)


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[j] + 1,
                    current[j - 1] + 1,
                    previous[j - 1] + (ref_word != hyp_word),
                )
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance over the number of reference words (0.0 for two empty texts)."""
    ref = normalize_words(reference)
    hyp = normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else float(len(hyp))
    return edit_distance(ref, hyp) / len(ref)
