"""The client's worker channel settings: token metadata, TLS switches, deadlines."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicefleet.rpc.channel import ChannelConfigError, WorkerChannelConfig
from voicefleet.rpc.tts_client import TTSClient

TOKEN = "c3" * 16


def test_the_token_travels_as_bearer_metadata(tmp_path: Path) -> None:
    assert WorkerChannelConfig().metadata() == ()
    assert WorkerChannelConfig(token=TOKEN).metadata() == (("authorization", f"Bearer {TOKEN}"),)
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    assert WorkerChannelConfig(token_file=str(secret)).resolved_token() == TOKEN
    with pytest.raises(ChannelConfigError, match=r"token_file: cannot read .*missing"):
        WorkerChannelConfig(token_file=str(tmp_path / "missing")).metadata()


def test_settings_are_checked_and_the_token_is_not_shown() -> None:
    config = WorkerChannelConfig(token=TOKEN, tls_ca="ca.pem", server_name="tts.internal")
    assert config.uses_tls and TOKEN not in repr(config)
    assert not WorkerChannelConfig().uses_tls and WorkerChannelConfig(tls=True).uses_tls
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        WorkerChannelConfig(tls=True, tls_cert="c.pem")
    with pytest.raises(ValueError, match="need tls"):
        WorkerChannelConfig(tls_cert="c.pem", tls_key="k.pem")
    with pytest.raises(ValueError, match="not both"):
        WorkerChannelConfig(token=TOKEN, token_file="/run/secrets/t")


async def test_the_client_keeps_its_old_signature_and_takes_a_token() -> None:
    async with TTSClient("127.0.0.1:1") as plain:
        assert plain.metadata == ()
        assert (plain.timeouts.start_session_s, plain.timeouts.control_s) == (3.0, 1.0)
    config = WorkerChannelConfig(token="d4" * 16)
    async with TTSClient("127.0.0.1:1", config=config, token=TOKEN) as client:
        assert client.metadata == (("authorization", f"Bearer {TOKEN}"),)
