import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.speech import espeak_speech, piper_speech, to_float, with_silence
from voicefleet.asr import ASRConfig, ASRError
from voicefleet.asr.faster_whisper import (
    FasterWhisperRecognizer,
    bundled_model_path,
    compression_ratio,
    repeats_itself,
)
from voicefleet.asr.segments import SegmentOptions
from voicefleet.asr.wer import word_error_rate

MAX_WER = 0.2


@pytest.fixture(scope="module")
def recognizer() -> Iterator[FasterWhisperRecognizer]:
    """The bundled tiny.en with the default config, loaded once for the module."""
    loaded = FasterWhisperRecognizer(ASRConfig())
    loaded.load()
    yield loaded


@pytest.mark.parametrize(
    "text",
    [
        "Turn on the kitchen lights please.",
        "What is the weather like this weekend?",
        "Could you send the report to my manager?",
    ],
)
def test_piper_speech_is_transcribed(recognizer: FasterWhisperRecognizer, text: str) -> None:
    audio = to_float(piper_speech(text, deterministic=True))
    transcript = recognizer.transcribe(audio)
    assert word_error_rate(text, transcript.text) <= MAX_WER, transcript.text
    assert transcript.language == "en"
    assert transcript.audio_s == pytest.approx(audio.size / 16000)
    assert transcript.compute_ms > 0
    assert transcript.text == transcript.text.strip()


def test_tiny_en_hears_english_whatever_the_sessions_language(
    recognizer: FasterWhisperRecognizer,
) -> None:
    text = "Turn on the kitchen lights please."
    audio = to_float(piper_speech(text, deterministic=True))
    told_french = recognizer.transcribe(audio, "fr-FR")
    assert told_french.language == "en"
    assert told_french.text == recognizer.transcribe(audio).text


@pytest.mark.parametrize("text", ["Please open the garage door.", "Where is the closest pharmacy?"])
def test_a_second_unrelated_voice_is_transcribed(
    recognizer: FasterWhisperRecognizer, text: str
) -> None:
    audio = to_float(espeak_speech(text, words_per_minute=150))
    transcript = recognizer.transcribe(audio)
    assert word_error_rate(text, transcript.text) <= MAX_WER, transcript.text


def test_short_clips_use_the_short_window(recognizer: FasterWhisperRecognizer) -> None:
    text = "Send a message to my brother."
    before = recognizer.full_window_runs
    audio = to_float(with_silence(piper_speech(text, deterministic=True), 16000, 0.3, 0.5))
    transcript = recognizer.transcribe(audio)
    assert word_error_rate(text, transcript.text) <= MAX_WER
    assert recognizer.full_window_runs == before


def test_a_clip_longer_than_the_window_goes_through_the_full_window(
    recognizer: FasterWhisperRecognizer,
) -> None:
    text = "Remind me to call the dentist on Monday."
    audio = to_float(with_silence(piper_speech(text, deterministic=True), 16000, 0.5, 10.0))
    before = recognizer.full_window_runs
    transcript = recognizer.transcribe(audio)
    assert word_error_rate(text, transcript.text) <= MAX_WER, transcript.text
    assert recognizer.full_window_runs == before + 1
    assert transcript.audio_s > 10


def test_silence_gives_empty_text(recognizer: FasterWhisperRecognizer) -> None:
    assert recognizer.transcribe(np.zeros(24_000, dtype=np.float32)).text == ""
    empty = recognizer.transcribe(np.zeros(0, dtype=np.float32))
    assert (empty.text, empty.audio_s) == ("", 0.0)


def test_audio_that_is_not_mono_float_is_a_clear_error(
    recognizer: FasterWhisperRecognizer,
) -> None:
    with pytest.raises(ASRError, match="mono"):
        recognizer.transcribe(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ASRError, match="int16"):
        recognizer.transcribe(np.zeros(16000, dtype=np.int16))


def test_a_missing_model_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    recognizer = FasterWhisperRecognizer(ASRConfig(model_path=str(missing)))
    with pytest.raises(ASRError, match=re.escape(str(missing))):
        recognizer.load()


def test_a_directory_without_a_model_names_the_path(tmp_path: Path) -> None:
    recognizer = FasterWhisperRecognizer(ASRConfig(model_path=str(tmp_path)))
    with pytest.raises(ASRError, match=re.escape(str(tmp_path)) + ".*model.bin"):
        recognizer.load()


def test_transcribing_before_load_is_a_clear_error() -> None:
    recognizer = FasterWhisperRecognizer(ASRConfig())
    with pytest.raises(ASRError, match="not loaded"):
        recognizer.transcribe(np.zeros(16000, dtype=np.float32))


def test_the_bundled_model_is_a_ctranslate2_directory() -> None:
    path = bundled_model_path()
    assert (path / "model.bin").is_file()
    assert (path / "tokenizer.json").is_file()


def test_repetition_checks_catch_a_sentence_said_twice() -> None:
    assert repeats_itself([7, 1, 2, 3, 4, 1, 2, 3, 4])
    assert not repeats_itself([1, 2, 3, 1, 2, 3])  # shorter spans repeat in real speech
    assert not repeats_itself([1, 2, 3, 4, 5, 6, 7, 8])
    looped = " ".join(["What time is it in Tokyo?"] * 6)
    assert compression_ratio(looped) > 2.4
    assert compression_ratio("What time is it in Tokyo?") < 2.4
    assert compression_ratio("") == 0.0


def test_word_timings_of_a_short_clip_come_from_the_tuned_decode(
    recognizer: FasterWhisperRecognizer,
) -> None:
    """One segment whose words match the plain transcript, in order, inside the clip, with the
    silence before the speech skipped; punctuation stays on its word."""
    text = "Please book a table for two people at seven tonight."
    audio = to_float(with_silence(piper_speech(text, deterministic=True), 16000, 0.8, 0.4))
    (segment,) = recognizer.segments(audio, SegmentOptions(words=True))
    assert segment.text == recognizer.transcribe(audio).text
    assert word_error_rate(text, " ".join(w.word for w in segment.words)) <= MAX_WER
    starts = [w.start for w in segment.words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in segment.words)
    assert 0.5 <= segment.words[0].start <= 1.2  # after the 0.8 s of silence, roughly
    assert segment.words[-1].end <= audio.size / 16000
    assert segment.words[-1].word.endswith(".") and all(
        any(c.isalnum() for c in w.word) for w in segment.words
    )
    assert 0 < min(w.probability for w in segment.words) <= 1


def test_a_prompt_or_a_long_clip_takes_faster_whispers_own_path(
    recognizer: FasterWhisperRecognizer,
) -> None:
    text = "Remind me to call the dentist on Monday."
    long_clip = to_float(with_silence(piper_speech(text, deterministic=True), 16000, 0.5, 10.0))
    for audio, options in (
        (long_clip, SegmentOptions(words=True)),
        (long_clip[: 16000 * 3], SegmentOptions(words=True, prompt="Dentist appointments.")),
    ):
        segments = list(recognizer.segments(audio, options))
        heard = " ".join(w.word for s in segments for w in s.words)
        assert word_error_rate(text, heard) <= MAX_WER, heard
        assert all(isinstance(w.start, float) for s in segments for w in s.words)
