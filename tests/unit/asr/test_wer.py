import jiwer
import pytest

from voicefleet.asr.wer import edit_distance, normalize_words, word_error_rate


def test_normalize_drops_case_punctuation_and_accents() -> None:
    assert normalize_words("Hello, World!  Café — OK?") == ["hello", "world", "cafe", "ok"]


def test_normalize_keeps_apostrophes_and_numbers_as_written() -> None:
    assert normalize_words("Don\u2019t pay $1,000.50 for 3.5 kg, it's 2 much.") == [
        "don't",
        "pay",
        "1000.50",
        "for",
        "3.5",
        "kg",
        "it's",
        "2",
        "much",
    ]
    assert normalize_words("'quoted' words") == ["quoted", "words"]


def test_identical_texts_differing_only_in_form_score_zero() -> None:
    assert word_error_rate("Turn on the lights, please.", "turn on the lights please") == 0.0


def test_substitution_insertion_and_deletion_each_cost_one_word() -> None:
    assert word_error_rate("a b c d", "a x c d") == 0.25
    assert word_error_rate("a b c d", "a b c d e") == 0.25
    assert word_error_rate("a b c d", "a c d") == 0.25
    assert word_error_rate("a b", "") == 1.0


def test_numbers_are_not_spelled_out() -> None:
    assert word_error_rate("a table for two", "a table for 2") == 0.25


def test_empty_reference() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("...", "") == 0.0
    assert word_error_rate("", "hello there") == 2.0


def test_edit_distance_is_symmetric_levenshtein() -> None:
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert edit_distance(list("sitting"), list("kitten")) == 3
    assert edit_distance([], ["a"]) == 1


@pytest.mark.parametrize(
    ("reference", "hypothesis"),
    [
        ("the cat sat on the mat", "the cat sat on mat"),
        ("what time is it in tokyo", "what time is it tokyo now please"),
        ("book a table for two at seven", "look at able for to at heaven"),
        ("one two three four five", "five four three two one"),
    ],
)
def test_agrees_with_jiwer_on_normalized_text(reference: str, hypothesis: str) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(jiwer.wer(reference, hypothesis))
