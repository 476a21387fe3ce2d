import sys

import numpy as np
import pytest

from voicefleet.asr import ASRConfig, ASRError, ASRUnavailable
from voicefleet.asr.service import ASRService, create_recognizer
from voicefleet.asr.whisperx import WhisperXRecognizer


@pytest.fixture(autouse=True)
def no_whisperx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import whisperx` fail whether or not the extra is installed here."""
    monkeypatch.setitem(sys.modules, "whisperx", None)


def test_the_engine_selects_the_whisperx_recognizer() -> None:
    recognizer = create_recognizer(ASRConfig(engine="whisperx"))
    assert isinstance(recognizer, WhisperXRecognizer)
    assert recognizer.name == "whisperx"


def test_loading_without_the_extra_says_how_to_install_it() -> None:
    recognizer = create_recognizer(ASRConfig(engine="whisperx"))
    with pytest.raises(ASRUnavailable) as caught:
        recognizer.load()
    assert "pip install 'voicefleet[whisperx]'" in str(caught.value)
    assert "whisperx extra" in str(caught.value)
    assert isinstance(caught.value, ASRError)


async def test_the_service_does_not_become_ready_without_the_extra() -> None:
    service = ASRService(ASRConfig(engine="whisperx"))
    with pytest.raises(ASRUnavailable, match="whisperx extra"):
        await service.start()
    assert not service.ready
    with pytest.raises(ASRError, match="not started"):
        await service.transcribe(np.zeros(16000, dtype=np.float32))
    service.close()


def test_transcribing_before_load_is_a_clear_error() -> None:
    recognizer = WhisperXRecognizer(ASRConfig(engine="whisperx"))
    with pytest.raises(ASRError, match="not loaded"):
        recognizer.transcribe(np.zeros(16000, dtype=np.float32))
