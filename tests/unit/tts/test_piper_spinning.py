"""Piper's `spinning` option: which ONNX Runtime session a synthesis runs on."""

from __future__ import annotations

import threading

import pytest
import yaml
from piper import PiperVoice
from pydantic import ValidationError

from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import RUNNING, PiperAdapter, spinning_mode
from voicefleet.tts.config import WorkerConfig


def _adapter(spinning: str | None) -> PiperAdapter:
    options: dict[str, float | int | str | bool] = {"threads": 1}
    if spinning is not None:
        options["spinning"] = spinning
    adapter = PiperAdapter(ModelSpec(id="joe", adapter="piper", options=options))
    adapter.load()
    return adapter


def _config(voice: PiperVoice | None, key: str) -> str | None:
    if voice is None:
        return None
    return str(voice.session.get_session_options().get_session_config_entry(key))


def _record_sessions(adapter: PiperAdapter) -> list[str]:
    """Wrap both sessions' synthesize calls; the list says which ran, in order."""
    used: list[str] = []
    for attribute, label in (("_voice", "quiet"), ("_spinning_voice", "spinning")):
        voice = getattr(adapter, attribute)
        if voice is None:
            continue
        original = voice.synthesize

        def tagged(*args: object, _original: object = original, _label: str = label) -> object:
            used.append(_label)
            return _original(*args)  # type: ignore[operator]

        voice.synthesize = tagged
    return used


def test_the_running_count_says_who_started_alone_and_always_returns_to_zero() -> None:
    assert RUNNING.count == 0
    with RUNNING.one() as first, RUNNING.one() as second:
        assert (first, second) == (True, False)
        assert RUNNING.count == 2
    with pytest.raises(ValueError), RUNNING.one():
        raise ValueError("a synthesis fails")
    assert RUNNING.count == 0


def test_by_default_the_spinning_session_stops_spinning_when_a_run_returns() -> None:
    adapter = _adapter(None)
    spinning, quiet = adapter._spinning_voice, adapter._voice
    assert _config(spinning, "session.intra_op.allow_spinning") == "1"
    assert _config(spinning, "session.force_spinning_stop") == "1"
    assert _config(quiet, "session.intra_op.allow_spinning") == "0"
    # both take working memory from one arena, not one each
    assert _config(spinning, "session.use_env_allocators") == "1"
    assert _config(quiet, "session.use_env_allocators") == "1"


def test_a_synthesis_alone_spins_and_one_started_while_another_computes_does_not() -> None:
    adapter = _adapter("alone")
    used = _record_sessions(adapter)
    assert list(adapter.synthesize("First.", SynthesisOptions()))
    with RUNNING.one():  # another synthesis is computing (another model, another thread)
        assert list(adapter.synthesize("Second.", SynthesisOptions()))
    assert list(adapter.synthesize("Third.", SynthesisOptions()))
    assert used == ["spinning", "quiet", "spinning"]
    assert RUNNING.count == 0


def test_a_generator_waiting_at_a_yield_does_not_count() -> None:
    """Only computing counts: a synthesis suspended between chunks (its consumer busy, or a
    stopped stream's generator kept alive by a traceback) cannot turn spinning off."""
    adapter = _adapter("alone")
    used = _record_sessions(adapter)
    first = adapter.synthesize("One sentence here. And a second one.", SynthesisOptions())
    next(first)  # suspended after its first chunk
    assert RUNNING.count == 0
    assert list(adapter.synthesize("Beside.", SynthesisOptions()))
    assert len(list(first)) == 1  # its second sentence, on the session it started on
    assert used == ["spinning", "spinning"]


def test_a_synthesis_of_another_thread_counts_too() -> None:
    adapter = _adapter("alone")
    used = _record_sessions(adapter)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        with RUNNING.one():  # another model's synthesis, in another thread
            started.set()
            release.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert started.wait(10)
        assert list(adapter.synthesize("Hello.", SynthesisOptions()))
    finally:
        release.set()
        other.join()
    assert used == ["quiet"]


@pytest.mark.parametrize(
    ("mode", "expected"), [("off", ["quiet", "quiet"]), ("always", ["spinning", "spinning"])]
)
def test_off_and_always_load_one_session(mode: str, expected: list[str]) -> None:
    adapter = _adapter(mode)
    assert (adapter._voice is None) == (mode == "always")
    assert (adapter._spinning_voice is None) == (mode == "off")
    used = _record_sessions(adapter)
    assert list(adapter.synthesize("First.", SynthesisOptions()))
    with RUNNING.one():
        assert list(adapter.synthesize("Second.", SynthesisOptions()))
    assert used == expected


@pytest.mark.parametrize(("written", "mode"), [("off", "off"), ("on", "always")])
def test_yaml_off_and_on_mean_off_and_always(written: str, mode: str) -> None:
    """Unquoted in YAML they are booleans; the config examples write `spinning: off`."""
    options = yaml.safe_load(f"spinning: {written}")
    assert isinstance(options["spinning"], bool)
    assert spinning_mode(ModelSpec(id="joe", adapter="piper", options=options)) == mode


def test_a_bad_spinning_option_stops_the_worker_config_naming_the_choices() -> None:
    for options, message in (
        ({"spinning": "yes"}, r"off, alone, always, got 'yes'"),
        ({"spin_threads": True}, r"spin_threads was replaced by spinning"),
    ):
        models = [{"id": "joe", "adapter": "piper", "options": options}]
        with pytest.raises(ValidationError, match=message):
            WorkerConfig(models=models, default_model="joe")
