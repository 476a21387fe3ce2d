from pathlib import Path

import pytest

from voicefleet.settings import ConfigError
from voicefleet.tts.config import WorkerConfig, load_worker_config, model_overrides
from voicefleet.tts.segmenter import FirstSegment

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.mark.parametrize("name", ["worker.yaml", "worker-mock.yaml", "worker-hibari.yaml"])
def test_shipped_worker_configs_load(name: str) -> None:
    config = load_worker_config(CONFIGS / name)
    assert config.default_model in {spec.id for spec in config.models}


def test_unknown_key_is_an_error_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("registry:\n  heartbeat_s: 1\n  hartbeat: 2\n")
    with pytest.raises(ConfigError, match=r"w\.yaml: registry\.hartbeat: Extra inputs"):
        load_worker_config(path)


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("limits:\n  max_sessions: lots\n")
    with pytest.raises(ConfigError, match=r"limits\.max_sessions"):
        load_worker_config(path)


def test_env_overrides_yaml_and_flags_override_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("port: 1000\nmax_lead_ms: 100\n")
    monkeypatch.setenv("VOICEFLEET_WORKER__PORT", "2000")
    monkeypatch.setenv("VOICEFLEET_WORKER__REGISTRY__HEARTBEAT_S", "0.5")
    monkeypatch.setenv("REDIS_URL", "redis://example:1/0")
    config = load_worker_config(path, {"max_lead_ms": 300})
    assert (config.port, config.max_lead_ms, config.registry.heartbeat_s) == (2000, 300, 0.5)
    assert config.registry.redis_url == "redis://example:1/0"


def test_default_model_must_be_in_the_catalog() -> None:
    with pytest.raises(ValueError, match="default_model 'x' is not in models"):
        WorkerConfig(default_model="x")


def test_model_flag_with_a_path_adds_a_catalog_entry() -> None:
    config = WorkerConfig.model_validate(model_overrides("piper", "/voices/en_GB-alan.onnx"))
    assert config.default_model == "en_GB-alan"
    assert config.models[0].path == "/voices/en_GB-alan.onnx"
    assert model_overrides("mock", None)["default_model"] == "mock"


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_worker_config(tmp_path / "nope.yaml")


def test_first_segment_defaults_to_words_and_loads_from_yaml(tmp_path: Path) -> None:
    assert WorkerConfig().first_segment.rule() == FirstSegment("words", 3, 8)
    path = tmp_path / "w.yaml"
    path.write_text("first_segment:\n  mode: clause\n  min_words: 2\n")
    assert load_worker_config(path).first_segment.rule() == FirstSegment("clause", 2, 8)


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("first_segment:\n  mode: phrase\n", r"first_segment\.mode"),
        ("first_segment:\n  min_words: 9\n  max_words: 4\n", "min_words must not exceed"),
        ("first_segment:\n  min_words: 0\n", r"first_segment\.min_words"),
    ],
)
def test_bad_first_segment_settings_name_the_key(tmp_path: Path, yaml: str, message: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError, match=message):
        load_worker_config(path)
