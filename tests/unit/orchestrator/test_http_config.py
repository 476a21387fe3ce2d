"""The http section: where the token comes from, and the limits that must make sense."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voicefleet.orchestrator.config import load_orchestrator_config
from voicefleet.settings import ConfigError


def write(tmp_path: Path, http: dict[str, object]) -> Path:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump({"http": http}))
    return path


def test_no_token_by_default_and_blank_is_none(tmp_path: Path) -> None:
    assert load_orchestrator_config(None).http.access_token() is None
    assert (
        load_orchestrator_config(write(tmp_path, {"auth_token": " "})).http.access_token() is None
    )


def test_the_token_from_yaml_a_file_or_the_environment_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_orchestrator_config(write(tmp_path, {"auth_token": "abc"})).http.access_token() == (
        "abc"
    )
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    config = load_orchestrator_config(write(tmp_path, {"auth_token_file": str(secret)}))
    assert config.http.access_token() == "from-a-file"
    # The generic override parses YAML scalars; the token is read as written.
    for raw in ("12345", "null", "yes"):
        monkeypatch.setenv("VOICEFLEET_ORCHESTRATOR__HTTP__AUTH_TOKEN", raw)
        assert load_orchestrator_config(None).http.access_token() == raw


@pytest.mark.parametrize(
    ("http", "says"),
    [
        ({"auth_token": 12345}, "must be a string"),
        ({"auth_token": "a", "auth_token_file": "/etc/hostname"}, "not both"),
        ({"auth_token_file": "/no/such/token"}, "cannot read"),
        ({"allowed_origins": ["evil.example"]}, "scheme://host"),
        ({"allowed_origins": ["https://a.example/path"]}, "scheme://host"),
        ({"trusted_proxies": ["caddy"]}, "not an IP"),
        ({"max_message_bytes": 4096, "message_cap_bytes": 2048}, "message_cap_bytes"),
        ({"hello_timeout_s": 0}, "hello_timeout_s"),
    ],
)
def test_bad_http_settings_fail_at_start_up(
    tmp_path: Path, http: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        load_orchestrator_config(write(tmp_path, http))


def test_an_empty_token_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load_orchestrator_config(write(tmp_path, {"auth_token_file": str(empty)}))


def test_the_shipped_config_loads_with_its_limits() -> None:
    config = load_orchestrator_config(Path(__file__).parents[3] / "configs" / "orchestrator.yaml")
    http = config.http
    assert http.max_message_bytes < http.message_cap_bytes
    assert http.hello_timeout_s > 0 and http.max_text_chars <= http.max_session_text_chars
