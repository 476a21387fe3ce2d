import random

import pytest

from voicefleet.tts.segmenter import FirstSegment, Segment, TextSegmenter

SENTENCE_ONLY = FirstSegment(mode="sentence")


def texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments]


def segment_all(text: str, first: FirstSegment | None = None) -> list[str]:
    segmenter = TextSegmenter(first_segment=first)
    return texts(segmenter.push(text) + segmenter.flush())


def chunked(text: str, sizes: list[int], first: FirstSegment | None = None) -> list[Segment]:
    """Push the text in chunks of the given sizes (cycled), then flush."""
    segmenter = TextSegmenter(first_segment=first)
    out: list[Segment] = []
    at = 0
    for size in sizes * len(text):
        if at >= len(text):
            break
        out += segmenter.push(text[at : at + size])
        at += size
    return out + segmenter.flush()


def test_first_clause_early_then_whole_sentences() -> None:
    text = "Hello there, how are you today? I am fine, thanks. Bye!"
    assert segment_all(text) == ["Hello there,", "how are you today?", "I am fine, thanks.", "Bye!"]


def test_clause_cut_needs_the_configured_number_of_words() -> None:
    assert segment_all("Well, that is it. Done.") == ["Well,", "that is it.", "Done."]
    strict = TextSegmenter(first_clause_min_words=2)
    assert texts(strict.push("Well, that is it. Done.") + strict.flush()) == [
        "Well, that is it.",
        "Done.",
    ]


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    text = "Dr. Smith met J. Doe at 3.5 p.m. today. Then left."
    assert segment_all(text, SENTENCE_ONLY) == [
        "Dr. Smith met J. Doe at 3.5 p.m. today.",
        "Then left.",
    ]


def test_token_stream_releases_segments_as_soon_as_they_are_certain() -> None:
    segmenter = TextSegmenter()
    released = [
        texts(segmenter.push(token))
        for token in ["Hel", "lo there", ",", " how", " are you?", " Fine", "."]
    ]
    assert released == [[], [], [], ["Hello there,"], [], ["how are you?"], []]
    assert texts(segmenter.flush()) == ["Fine."]


def test_sentence_held_until_followed_by_space_then_flushed_at_end() -> None:
    segmenter = TextSegmenter()
    assert texts(segmenter.push("One two three four.")) == []
    assert texts(segmenter.flush()) == ["One two three four."]


def test_unpunctuated_text_is_cut_at_a_space_before_the_limit() -> None:
    segmenter = TextSegmenter(max_segment_chars=20)
    out = texts(segmenter.push("alpha beta gamma delta epsilon zeta eta theta"))
    assert out and all(len(s) <= 20 for s in out)
    assert (
        " ".join(out + texts(segmenter.flush())) == "alpha beta gamma delta epsilon zeta eta theta"
    )


def test_punctuation_only_is_not_a_segment() -> None:
    assert segment_all(" ... !! ") == []


def test_spans_point_into_the_input_however_it_was_chunked() -> None:
    text = "  Hello  there, how are\nyou today?  I am fine.   Bye!  "
    for size in (1, 3, 7, len(text)):
        segmenter = TextSegmenter()
        out: list[Segment] = []
        for at in range(0, len(text), size):
            out += segmenter.push(text[at : at + size])
        out += segmenter.flush()
        assert [text[s.start : s.end] for s in out] == [
            "Hello  there,",
            "how are\nyou today?",
            "I am fine.",
            "Bye!",
        ]
        assert texts(out) == ["Hello there,", "how are you today?", "I am fine.", "Bye!"]


def test_unspeakable_text_is_skipped_but_still_counted_in_the_spans() -> None:
    segmenter = TextSegmenter(first_segment=SENTENCE_ONLY)
    out = segmenter.push("... !! Then this. ") + segmenter.flush()
    assert [(s.text, s.start, s.end) for s in out] == [("Then this.", 7, 17)]


# (text, the first segment the worker synthesizes) with the default FirstSegment (words, 3..8).
FIRST_SEGMENTS = [
    # one word, short replies: nothing to gain from a cut
    ("Yes.", "Yes."),
    ("Okay", "Okay"),
    ("Sure thing.", "Sure thing."),
    ("I can help you with that.", "I can help you with that."),
    # 8-20 words, no comma: before a preposition or conjunction, at 3..8 words
    (
        "The quick brown fox jumps over the lazy dog near the river bank today.",
        "The quick brown fox jumps",
    ),
    (
        "The meeting has been moved to next Thursday because the manager is traveling.",
        "The meeting has been moved",
    ),
    (
        "I think that we should go to the park tomorrow morning with the kids.",
        "I think that we should go",
    ),
    # the "to" of an infinitive stays with its verb
    (
        "I am going to need a few more minutes to finish the report for the client.",
        "I am going to need a few more minutes",
    ),
    (
        "I would like to book a table for two people at seven, if possible.",
        "I would like to book a table",
    ),
    # no opener within 8 words: a plain word boundary at 8
    (
        "Our friendly neighborhood baker makes delicious fresh bread every single morning at dawn.",
        "Our friendly neighborhood baker makes delicious fresh bread",
    ),
    # numbers and units stay whole, a title keeps its name
    (
        "The package weighs 3.5 kg and costs about 1,000 dollars including shipping fees.",
        "The package weighs 3.5 kg",
    ),
    (
        "Your appointment with Dr. Smith is at 10:30 on Tuesday morning.",
        "Your appointment with Dr. Smith is",
    ),
    # a question
    (
        "Could you tell me what time the train to Boston leaves tomorrow morning?",
        "Could you tell me",
    ),
    # names
    (
        "We drove from New York to Salt Lake City in just under three days.",
        "We drove from New York",
    ),
    (
        "I went to Barnes and Noble and bought a book about the history of Rome.",
        "I went to Barnes and Noble",
    ),
    # a clause break first
    ("Well, that depends on a few things.", "Well,"),
    (
        "Hello there, how are you doing today? I hope the weather is nice where you are.",
        "Hello there,",
    ),
]


@pytest.mark.parametrize(("text", "first"), FIRST_SEGMENTS)
def test_first_segment_by_text_shape(text: str, first: str) -> None:
    segments = segment_all(text)
    assert segments[0] == first
    assert " ".join(segments) == " ".join(text.split()), "every word spoken once, in order"


def test_a_paragraph_is_cut_early_once_then_sentence_by_sentence() -> None:
    text = (
        "The quick brown fox jumps over the lazy dog near the river bank today. It was not"
        " amused by the fox at all, and it said so. Then everyone went home."
    )
    segmenter = TextSegmenter()
    out = segmenter.push(text) + segmenter.flush()
    assert [(s.text, s.continues) for s in out] == [
        ("The quick brown fox jumps", True),
        ("over the lazy dog near the river bank today.", False),
        ("It was not amused by the fox at all, and it said so.", False),
        ("Then everyone went home.", False),
    ]


@pytest.mark.parametrize(
    ("text", "words", "first"),
    [
        # plain boundaries from the first word on: not between a title and its name
        ("Mr. Smith walked to the old mill yesterday.", 1, "Mr. Smith walked"),
        # from the third word on: not inside "5 km" or "New York City"
        ("We walked 5 km to the old mill yesterday.", 3, "We walked 5 km"),
        # no boundary within reach that keeps the name whole: the sentence
        (
            "She moved to New York City last year with her family.",
            3,
            "She moved to New York City last year with her family.",
        ),
    ],
)
def test_names_numbers_and_units_stay_whole(text: str, words: int, first: str) -> None:
    assert segment_all(text, FirstSegment(min_words=words, max_words=words))[0] == first


def test_modes_clause_and_sentence() -> None:
    long = "The quick brown fox jumps over the lazy dog near the river bank today."
    greeting = "Hello there, how are you today? Fine."
    clause = FirstSegment(mode="clause")
    assert segment_all(long, clause) == [long]
    assert segment_all(greeting, clause) == ["Hello there,", "how are you today?", "Fine."]
    assert segment_all(greeting, SENTENCE_ONLY) == ["Hello there, how are you today?", "Fine."]
    assert segment_all(long, FirstSegment(min_words=6, max_words=9)) == [
        "The quick brown fox jumps over the lazy dog",
        "near the river bank today.",
    ]


def test_first_segment_rule_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min_words <= max_words"):
        FirstSegment(min_words=5, max_words=3)


def test_word_cut_waits_until_the_words_after_it_are_complete() -> None:
    segmenter = TextSegmenter()
    tokens = ["The quick brown fox jumps ", "ov", "er the lazy", " dog", " near the bank."]
    released = [texts(segmenter.push(token)) for token in tokens]
    assert released == [[], [], [], ["The quick brown fox jumps"], []]
    assert texts(segmenter.flush()) == ["over the lazy dog near the bank."]


def test_a_clause_cut_waits_while_an_earlier_word_cut_is_undecided() -> None:
    text = "I think we should go to town, then eat."
    assert segment_all(text) == ["I think we should go", "to town, then eat."]
    segmenter = TextSegmenter()
    released = [
        texts(segmenter.push(token))
        for token in ["I think we should go to town, ", "then ", "eat."]
    ]
    assert released == [[], ["I think we should go"], []]


def test_the_end_of_input_completes_the_last_word() -> None:
    segmenter = TextSegmenter()
    assert segmenter.push("I think that we should go to the park") == []
    assert texts(segmenter.flush()) == ["I think that we should go", "to the park"]


def test_word_cut_spans_point_into_the_input() -> None:
    text = "  The quick  brown fox\njumps over the\tlazy dog near the river bank today.  Done. "
    out = chunked(text, [1])
    assert [text[s.start : s.end] for s in out] == [
        "The quick  brown fox\njumps",
        "over the\tlazy dog near the river bank today.",
        "Done.",
    ]


_VOCABULARY = " ".join(
    [
        "the a we I you it train park table report Smith Dr. Mr. New York Boston Barnes and or",
        "but so because that which who where when to for with in on at from about going want",
        "have is was will 3.5 1,000 10:30 5 km twenty percent e.g. J. Doe quickly very not",
        "don't it's",
    ]
).split()
_PUNCTUATION = ["", "", "", "", ",", ".", "?", "!", ";", " -", "...", ":"]


def random_text(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(1, 40)):
        words.append(rng.choice(_VOCABULARY) + rng.choice(_PUNCTUATION))
        words.append(rng.choice([" ", " ", " ", "  ", "\n", " \t"]))
    return "".join(words[: rng.choice([-1, len(words)])])


def test_the_segments_do_not_depend_on_how_the_text_was_chunked() -> None:
    rng = random.Random(20260107)
    samples = [text for text, _first in FIRST_SEGMENTS] + [random_text(rng) for _ in range(400)]
    for text in samples:
        whole = chunked(text, [len(text) or 1])
        for _ in range(4):
            sizes = [rng.randint(1, 7) for _ in range(rng.randint(1, 9))]
            assert chunked(text, sizes) == whole, (text, sizes)
        assert chunked(text, [1]) == whole, text
        check_spans_and_joins(text, whole)


def check_spans_and_joins(text: str, segments: list[Segment]) -> None:
    """Exact spans, in order, every speakable word once; a word cut leaves 3+ words after it."""
    previous_end = 0
    for index, segment in enumerate(segments):
        assert previous_end <= segment.start < segment.end <= len(text)
        assert " ".join(text[segment.start : segment.end].split()) == segment.text
        previous_end = segment.end
        if segment.continues:
            assert len(segments[index + 1].text.split()) >= 3, segments
    spoken = " ".join(s.text for s in segments).split()
    assert [w for w in spoken if any(c.isalnum() for c in w)] == [
        w for w in text.split() if any(c.isalnum() for c in w)
    ]
