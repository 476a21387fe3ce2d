"""transport.wyoming: its defaults, what a URI and an allow-list may be, the allow-list's
verdicts, and the URI `voicefleet up` listens on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from voicefleet.orchestrator.config import WyomingConfig, load_orchestrator_config
from voicefleet.orchestrator.transports.admission import AllowedAddresses
from voicefleet.settings import ConfigError
from voicefleet.up import wyoming_uri


def load(tmp_path: Path, wyoming: dict[str, object]) -> WyomingConfig:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump({"transport": {"wyoming": wyoming}}))
    return load_orchestrator_config(path).transport.wyoming


def test_off_by_default_on_loopback_port_10200() -> None:
    wyoming = load_orchestrator_config(None).transport.wyoming
    assert not wyoming.enabled
    assert wyoming.uri == "tcp://127.0.0.1:10200"
    assert wyoming.allowed_addresses == []
    assert wyoming.sample_rate == 22050


def test_the_shipped_config_validates_with_the_same_defaults() -> None:
    shipped = load_orchestrator_config(Path("configs/orchestrator.yaml")).transport.wyoming
    assert shipped == load_orchestrator_config(None).transport.wyoming


@pytest.mark.parametrize(
    "uri", ["tcp://0.0.0.0:10200", "tcp://[::]:10300", "unix:///run/voicefleet/wyoming.sock"]
)
def test_tcp_and_unix_uris_are_accepted(tmp_path: Path, uri: str) -> None:
    assert load(tmp_path, {"uri": uri}).uri == uri


@pytest.mark.parametrize(
    "uri", ["tcp://0.0.0.0", "stdio://", "http://127.0.0.1:10200", "127.0.0.1:10200", "tcp://:1"]
)
def test_other_uris_fail_naming_the_key(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ConfigError, match=r"transport\.wyoming\.uri"):
        load(tmp_path, {"uri": uri})


def test_a_bad_allowed_address_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"allowed_addresses.*not an IP address or network"):
        load(tmp_path, {"allowed_addresses": ["192.168.1.0/24", "homeassistant.local"]})


def test_the_environment_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEFLEET_ORCHESTRATOR__TRANSPORT__WYOMING__ENABLED", "true")
    monkeypatch.setenv(
        "VOICEFLEET_ORCHESTRATOR__TRANSPORT__WYOMING__ALLOWED_ADDRESSES", "[10.0.0.7]"
    )
    wyoming = load_orchestrator_config(None).transport.wyoming
    assert wyoming.enabled and wyoming.allowed_addresses == ["10.0.0.7"]


def test_an_empty_allow_list_lets_everyone_in() -> None:
    assert AllowedAddresses([]).allows("203.0.113.9")
    assert AllowedAddresses([]).allows("not an address")


def test_the_allow_list_takes_addresses_and_networks_of_both_families() -> None:
    allowed = AllowedAddresses(["192.168.1.20", "10.0.0.0/8", "fd00::/8"])
    assert allowed.allows("192.168.1.20")
    assert not allowed.allows("192.168.1.21")
    assert allowed.allows("10.200.3.4")
    assert allowed.allows("fd12::1")
    assert not allowed.allows("fe80::1%eth0")
    assert not allowed.allows("127.0.0.1")
    assert not allowed.allows("")  # no IP at all, with a list: refused


def test_an_ipv4_client_on_a_dual_stack_socket_is_judged_as_ipv4() -> None:
    allowed = AllowedAddresses(["192.168.1.0/24"])
    assert allowed.allows("::ffff:192.168.1.5")
    assert not allowed.allows("::ffff:192.168.2.5")


def test_up_keeps_the_configured_port_when_free_and_moves_off_a_taken_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        moved = wyoming_uri(f"tcp://127.0.0.1:{port}", None)
        assert moved.startswith("tcp://127.0.0.1:") and moved != f"tcp://127.0.0.1:{port}"
        assert wyoming_uri("tcp://127.0.0.1:10200", port) != f"tcp://127.0.0.1:{port}"
    free = int(moved.rsplit(":", 1)[1])
    assert wyoming_uri("tcp://127.0.0.1:10200", free) == f"tcp://127.0.0.1:{free}"
    assert wyoming_uri("unix:///tmp/w.sock", 5) == "unix:///tmp/w.sock"
