from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from voicefleet.asr import ASRConfig

REPO = Path(__file__).resolve().parents[3]


def test_defaults_are_the_measured_short_utterance_settings() -> None:
    config = ASRConfig()
    assert config.engine == "faster-whisper"
    assert config.model == "tiny.en"
    assert config.model_path is None
    assert (config.beam_size, config.compute_type) == (1, "int8")
    # bench/asr_load.py: two 1-thread replicas, finals batched by up to 4.
    assert (config.workers, config.cpu_threads, config.max_batch) == (2, 1, 4)
    assert config.chunk_length == 10
    assert config.without_timestamps is True
    assert config.condition_on_previous_text is False
    assert config.vad_filter is False
    assert config.temperature_fallback is False


def test_unknown_keys_are_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match="beam_width"):
        ASRConfig.model_validate({"beam_width": 5})


@pytest.mark.parametrize(
    "bad",
    [
        {"engine": "vosk"},
        {"model": "large-v3"},
        {"beam_size": 0},
        {"workers": 0},
        {"cpu_threads": 0},
        {"chunk_length": 0},
        {"chunk_length": 31},
        {"language": ""},
    ],
)
def test_out_of_range_values_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        ASRConfig.model_validate(bad)


def test_chunk_length_null_means_the_full_window() -> None:
    assert ASRConfig.model_validate({"chunk_length": None}).chunk_length is None


def test_the_shipped_orchestrator_section_validates() -> None:
    section = yaml.safe_load((REPO / "configs" / "orchestrator.yaml").read_text())["asr"]
    config = ASRConfig.model_validate(section)
    assert config.engine == section["engine"]
    assert config.model == section["model"] == "tiny.en"
    assert config.workers == section["workers"]
    assert (config.cpu_threads, config.max_batch) == (section["cpu_threads"], section["max_batch"])
