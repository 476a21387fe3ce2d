from voicefleet.tts.segmenter import TextSegmenter


def segment_all(text: str) -> list[str]:
    segmenter = TextSegmenter()
    return segmenter.push(text) + segmenter.flush()


def test_first_clause_early_then_whole_sentences() -> None:
    text = "Hello there, how are you today? I am fine, thanks. Bye!"
    assert segment_all(text) == ["Hello there,", "how are you today?", "I am fine, thanks.", "Bye!"]


def test_clause_cut_needs_the_configured_number_of_words() -> None:
    assert segment_all("Well, that is it. Done.") == ["Well,", "that is it.", "Done."]
    strict = TextSegmenter(first_clause_min_words=2)
    assert strict.push("Well, that is it. Done.") + strict.flush() == ["Well, that is it.", "Done."]


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    text = "Dr. Smith met J. Doe at 3.5 p.m. today. Then left."
    segmenter = TextSegmenter(first_clause_min_words=99)
    assert segmenter.push(text) + segmenter.flush() == [
        "Dr. Smith met J. Doe at 3.5 p.m. today.",
        "Then left.",
    ]


def test_token_stream_releases_segments_as_soon_as_they_are_certain() -> None:
    segmenter = TextSegmenter()
    released = [
        segmenter.push(token)
        for token in ["Hel", "lo there", ",", " how", " are you?", " Fine", "."]
    ]
    assert released == [[], [], [], ["Hello there,"], [], ["how are you?"], []]
    assert segmenter.flush() == ["Fine."]


def test_sentence_held_until_followed_by_space_then_flushed_at_end() -> None:
    segmenter = TextSegmenter()
    assert segmenter.push("One two three four.") == []
    assert segmenter.flush() == ["One two three four."]


def test_unpunctuated_text_is_cut_at_a_space_before_the_limit() -> None:
    segmenter = TextSegmenter(max_segment_chars=20)
    out = segmenter.push("alpha beta gamma delta epsilon zeta eta theta")
    assert out and all(len(s) <= 20 for s in out)
    assert " ".join(out + segmenter.flush()) == "alpha beta gamma delta epsilon zeta eta theta"


def test_punctuation_only_is_not_a_segment() -> None:
    assert segment_all(" ... !! ") == []
