import numpy as np
import pytest

from voicefleet.tts.adapters import ENTRY_POINT_GROUP, ModelSpec, adapter_classes
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.adapters.mock import MockAdapter
from voicefleet.tts.adapters.piper import PiperAdapter
from voicefleet.tts.errors import InvalidRequest


def test_adapters_are_discovered_through_the_entry_point_group() -> None:
    assert ENTRY_POINT_GROUP == "voicefleet.tts_adapters"
    classes = adapter_classes()
    assert classes["mock"] is MockAdapter
    assert classes["piper"] is PiperAdapter


def test_mock_is_deterministic_and_speech_shaped() -> None:
    adapter = MockAdapter(ModelSpec(id="m", adapter="mock"))
    adapter.load()
    first = np.concatenate(list(adapter.synthesize("Hello there, world.", SynthesisOptions())))
    second = np.concatenate(list(adapter.synthesize("Hello there, world.", SynthesisOptions())))
    assert np.array_equal(first, second)
    assert 0.5 < first.size / adapter.sample_rate < 3.0
    assert np.max(np.abs(first)) <= 1.0
    # Speech-shaped: voiced stretches separated by silent gaps.
    assert (first == 0).mean() > 0.1


def test_session_options_are_validated_against_the_adapter() -> None:
    adapter = MockAdapter(ModelSpec(id="m", adapter="mock"))
    assert adapter.parse_options("low", {"rtf": "0.1"}).values == {"rtf": 0.1}
    with pytest.raises(InvalidRequest, match="unknown option 'speed'"):
        adapter.parse_options("", {"speed": "2"})
    with pytest.raises(InvalidRequest, match="must be a number"):
        adapter.parse_options("", {"rtf": "fast"})
    with pytest.raises(InvalidRequest, match="out of range"):
        adapter.parse_options("", {"length_scale": "0"})
    with pytest.raises(InvalidRequest, match="no voice 'alto'"):
        adapter.parse_options("alto", {})


@pytest.mark.parametrize(
    ("adapter_class", "key", "text"),
    [
        (MockAdapter, "length_scale", "1e6"),  # found by fuzzing: 1e6 asked for ~8 GB of audio
        (MockAdapter, "length_scale", "10.5"),
        (MockAdapter, "rtf", "1e6"),  # would hold a synthesis thread for days
        (PiperAdapter, "length_scale", "1e308"),
        (PiperAdapter, "noise_w_scale", "50"),
    ],
)
def test_session_options_have_an_upper_bound(
    adapter_class: type[MockAdapter] | type[PiperAdapter], key: str, text: str
) -> None:
    adapter = adapter_class(ModelSpec(id="m", adapter=adapter_class.name))
    with pytest.raises(InvalidRequest, match=f"option '{key}' out of range"):
        adapter.parse_options("", {key: text})
    assert adapter.parse_options("", {key: "1.5"}).values == {key: 1.5}


def test_piper_with_zero_noise_is_deterministic() -> None:
    adapter = PiperAdapter(ModelSpec(id="joe", adapter="piper"))
    adapter.load()
    options = adapter.parse_options("", {"noise_scale": "0", "noise_w_scale": "0"})
    runs = [np.concatenate(list(adapter.synthesize("Testing one two.", options))) for _ in range(2)]
    assert adapter.sample_rate == 22_050
    assert runs[0].size == runs[1].size > 0.5 * 22_050
    assert np.allclose(runs[0], runs[1], atol=1e-4)


def test_piper_speed_divides_the_length_scale_within_its_range() -> None:
    """`speed` (the OpenAI API's) is Piper's length scale inverted, 0.25-4 like OpenAI's."""
    adapter = PiperAdapter(ModelSpec(id="joe", adapter="piper"))
    assert adapter.parse_options("", {"speed": "2"}).values == {"speed": 2.0}
    for bad in ("0.1", "5", "0"):
        with pytest.raises(InvalidRequest, match=r"option 'speed' out of range \(0.25-4\)"):
            adapter.parse_options("", {"speed": bad})

    class Voice:
        class config:
            length_scale = 1.2

    scale = PiperAdapter._length_scale
    assert scale(Voice, {"speed": 2.0}) == pytest.approx(0.6)  # type: ignore[arg-type]
    assert scale(Voice, {"speed": 2.0, "length_scale": 1.0}) == pytest.approx(0.5)  # type: ignore[arg-type]
    assert scale(Voice, {"length_scale": 1.1}) == 1.1  # type: ignore[arg-type]
    assert scale(Voice, {}) is None  # type: ignore[arg-type]
