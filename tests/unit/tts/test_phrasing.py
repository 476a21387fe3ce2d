import pytest

from voicefleet.tts.phrasing import may_cut_before, words_in


def cut_ok(marked: str, *, plain: bool = False) -> bool:
    """Whether a cut may go where "|" stands in `marked`."""
    before, after = marked.split("|")
    words = words_in(before + after)
    return may_cut_before(words, len(words_in(before)), plain=plain)


@pytest.mark.parametrize(
    "marked",
    [
        "The quick brown fox jumps |over the lazy dog",
        "Could you tell me |what time it is",
        "The package weighs 3.5 kg |and costs more",
        "The meeting is |at noon today",
        "We drove from New York |to Salt Lake City",
        "I went to Barnes and Noble |and bought a book",
        "I will meet Anna |in the park today",
        "Your order number is 48213 |and the total comes to ten",  # a number is over
        "The code is twenty four |but the door is open",
    ],
)
def test_a_cut_before_a_phrase_opener(marked: str) -> None:
    assert cut_ok(marked)


@pytest.mark.parametrize(
    "marked",
    [
        "I am going |to need more time",  # the "to" of an infinitive
        "It came from |under the bed",  # opener after an opener
        "It was a cup |of tea after all",  # "of" binds
        "I went to Barnes |and Noble yesterday",  # a name joined by "and"
        "We met at 5 |in the evening",  # after a number
        "I need 2 |and a half cups of flour",  # one quantity
        "Pick 5 |or 6 of the apples today",  # counting goes on
        "It costs $20 |and 50 cents today",
        "Please call Mr. |Smith about it",
        "The quick brown fox |jumps over the dog",  # no opener
    ],
)
def test_no_cut_where_the_words_belong_together(marked: str) -> None:
    assert not cut_ok(marked)


@pytest.mark.parametrize(
    ("marked", "allowed"),
    [
        ("Our baker makes fresh bread |every single morning", True),  # a noun phrase starts
        ("She said that Tom |likes it a lot", False),  # a verb: no phrase boundary known
        ("Our baker makes delicious |fresh bread every day", False),  # adjective and noun
        ("We walked 5 |km along the river", False),  # digit and unit
        ("She moved to New |York City last year", False),  # a name
        ("I do |not think so today", False),
        ("We have |a question about it", False),  # after an auxiliary
        ("It costs twenty |percent more than that", False),  # spelled number and unit
        ("We bought it |the day before yesterday", True),
        ("We bought it |5 days ago", True),
        ("It weighs approx. |5 kg in all", False),  # after an abbreviation
        ("Bring something small, e.g. |a book or two", False),
    ],
)
def test_plain_boundaries_only_before_a_noun_phrase(marked: str, allowed: bool) -> None:
    assert cut_ok(marked, plain=True) is allowed
