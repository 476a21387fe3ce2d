"""Worker credentials, session ownership and the pinned default model, without processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from voicefleet.settings import ConfigError
from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.auth import (
    INVALID,
    MALFORMED,
    MISSING,
    Credentials,
    load_credentials,
    peer_identity,
)
from voicefleet.tts.config import AuthConfig, TLSConfig, WorkerConfig, load_worker_config
from voicefleet.tts.errors import (
    ModelPinned,
    Overloaded,
    SessionExists,
    SessionNotFound,
    Unauthenticated,
)
from voicefleet.tts.models import ModelManager
from voicefleet.tts.session import SessionTable, WorkerSession

A = "a1" * 16
B = "b2" * 16


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_authenticate_names_the_identity_and_refuses_the_rest() -> None:
    credentials = load_credentials(AuthConfig(tokens={"orch-a": A, "orch-b": B}))
    assert credentials.enabled and credentials.identities == ["orch-a", "orch-b"]
    assert credentials.authenticate(bearer(A)) == "orch-a"
    assert credentials.authenticate((("Authorization", f"bearer  {B} "),)) == "orch-b"
    for metadata, message in [
        ((), MISSING),
        ((("x-other", A),), MISSING),
        ((("authorization", A),), MALFORMED),
        ((("authorization", "Basic abc"),), MALFORMED),
        (bearer(A + "x"), INVALID),
        (bearer(A[:-1]), INVALID),
    ]:
        with pytest.raises(Unauthenticated) as refused:
            credentials.authenticate(metadata)
        assert str(refused.value) == message
        assert A not in str(refused.value)


def test_no_token_means_open() -> None:
    assert not load_credentials(AuthConfig()).enabled
    assert not Credentials().enabled


def test_the_token_comes_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEFLEET_WORKER__AUTH__TOKEN", A)
    config = load_worker_config(None)
    assert load_credentials(config.auth).authenticate(bearer(A)) == "default"
    monkeypatch.delenv("VOICEFLEET_WORKER__AUTH__TOKEN")

    secret = tmp_path / "token"
    secret.write_text(B + "\n")
    monkeypatch.setenv("VOICEFLEET_WORKER__AUTH__TOKEN_FILE", str(secret))
    monkeypatch.setenv("VOICEFLEET_WORKER__AUTH__TOKENS__ORCH_A", A)
    credentials = load_credentials(load_worker_config(None).auth)
    assert credentials.authenticate(bearer(B)) == "default"
    assert credentials.authenticate(bearer(A)) == "orch_a"


def test_bad_token_files_fail_start_up_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"auth\.token_file: cannot read .*nope"):
        load_credentials(AuthConfig(token_file=str(tmp_path / "nope")))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_credentials(AuthConfig(token_file=str(empty)))
    short = tmp_path / "short"
    short.write_text("secret")
    with pytest.raises(ConfigError, match="at least 16 characters") as refused:
        load_credentials(AuthConfig(token_file=str(short)))
    assert "secret" not in str(refused.value).replace(str(short), "")


@pytest.mark.parametrize(
    ("auth", "error"),
    [
        ({"token": "short"}, "at least 16 characters"),
        ({"token": "has spaces in it, sixteen+"}, "at least 16 characters"),
        ({"token": A, "token_file": "/run/secrets/t"}, "not both"),
        ({"tokens": {"a": A, "b": A}}, "share one token"),
        ({"tokens": {"bad name": A}}, "identity 'bad name'"),
        ({"token": A, "tokens": {"default": B}}, "'default' is the identity"),
    ],
)
def test_auth_config_is_validated(auth: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error) as refused:
        WorkerConfig(auth=auth)  # type: ignore[arg-type]
    assert A not in str(refused.value)


def test_tokens_stay_out_of_the_config_repr() -> None:
    config = WorkerConfig(auth=AuthConfig(token=A, tokens={"orch-b": B}))
    assert A not in repr(config) and B not in repr(config) and B not in str(config)


def test_tls_config_needs_cert_and_key_together() -> None:
    assert not TLSConfig().enabled and TLSConfig(cert="c", key="k").enabled
    with pytest.raises(ValueError, match="cert and key go together"):
        TLSConfig(cert="c")
    with pytest.raises(ValueError, match="client_ca"):
        TLSConfig(client_ca="ca")


def test_peer_identity_drops_the_port() -> None:
    assert peer_identity("ipv4:10.0.0.5:41234") == "ipv4:10.0.0.5"
    assert peer_identity("ipv6:[::1]:50051") == "ipv6:[::1]"
    assert peer_identity("unix:/tmp/worker.sock") == "unix:/tmp/worker.sock"


def session(sid: str, owner: str) -> WorkerSession:
    return WorkerSession(sid, "mock", SynthesisOptions(), owner)


def test_sessions_belong_to_their_owner() -> None:
    table = SessionTable(max_sessions=8)
    table.add(session("s1", "orch-a"))
    with pytest.raises(SessionNotFound) as foreign:
        table.get("orch-b", "s1")
    with pytest.raises(SessionNotFound) as unknown:
        table.get("orch-b", "s2")
    assert str(foreign.value).replace("s1", "?") == str(unknown.value).replace("s2", "?")
    with pytest.raises(SessionExists):
        table.add(session("s1", "orch-a"))
    table.add(session("s1", "orch-b"))  # the same id for someone else: no oracle, no clash
    assert table.get("orch-a", "s1") is not table.get("orch-b", "s1")
    assert not table.remove(session("s1", "orch-a")), "only the registered object is removed"
    assert table.remove(table.get("orch-a", "s1")) and len(table) == 1


def test_one_owner_cannot_fill_the_worker() -> None:
    table = SessionTable(max_sessions=4, max_per_owner=2)
    table.add(session("a1", "orch-a"))
    table.add(session("a2", "orch-a"))
    with pytest.raises(Overloaded, match=r"'orch-a' already holds 2 .*per_credential=2"):
        table.reserve("orch-a", "a3")
    table.add(session("b1", "orch-b"))
    table.add(session("b2", "orch-b"))
    with pytest.raises(Overloaded, match="max_sessions=4"):
        table.reserve("orch-c", "c1")


async def test_the_pinned_default_model_cannot_be_unloaded() -> None:
    catalog = {name: ModelSpec(id=name, adapter="mock") for name in ("a", "b")}
    for pin in (True, False):
        models = ModelManager(
            catalog, "a", ThreadPoolExecutor(1), ttl_s=10, resident_cap=2, pin_default=pin
        )
        await models.ensure_loaded("a")
        await models.ensure_loaded("b")
        assert await models.unload("b")
        if pin:
            with pytest.raises(ModelPinned, match="pinned default model"):
                await models.unload("a")
            assert models.resident_ids == ["a"]
        else:
            assert await models.unload("a")
