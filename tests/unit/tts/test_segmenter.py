from voicefleet.tts.segmenter import Segment, TextSegmenter


def texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments]


def segment_all(text: str) -> list[str]:
    segmenter = TextSegmenter()
    return texts(segmenter.push(text) + segmenter.flush())


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
    segmenter = TextSegmenter(first_clause_min_words=99)
    assert texts(segmenter.push(text) + segmenter.flush()) == [
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
    segmenter = TextSegmenter(first_clause_min_words=99)
    out = segmenter.push("... !! Then this. ") + segmenter.flush()
    assert [(s.text, s.start, s.end) for s in out] == [("Then this.", 7, 17)]
