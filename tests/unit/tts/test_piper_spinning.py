"""Piper's `spinning` option: which ONNX Runtime session a synthesis runs on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from piper import PiperVoice

from voicefleet.tts.adapters import ModelSpec
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.piper import RUNNING, PiperAdapter
from voicefleet.tts.errors import InvalidRequest


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


def test_a_synthesis_alone_spins_and_one_started_beside_it_does_not() -> None:
    adapter = _adapter("alone")
    used = _record_sessions(adapter)
    first: Iterator[object] = adapter.synthesize("First sentence here.", SynthesisOptions())
    next(first)  # running: suspended inside its synthesis
    assert RUNNING.count == 1
    beside = list(adapter.synthesize("Second.", SynthesisOptions()))
    list(first)
    assert beside and RUNNING.count == 0
    later = list(adapter.synthesize("Third.", SynthesisOptions()))
    assert later
    assert used == ["spinning", "quiet", "spinning"]


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
    first = adapter.synthesize("First sentence here.", SynthesisOptions())
    next(first)
    assert list(adapter.synthesize("Second.", SynthesisOptions()))
    list(first)
    assert used == expected


def test_an_unknown_spinning_mode_is_refused_naming_the_choices() -> None:
    adapter = PiperAdapter(ModelSpec(id="joe", adapter="piper", options={"spinning": "yes"}))
    with pytest.raises(InvalidRequest, match=r"off, alone, always.*'yes'"):
        adapter.load()
