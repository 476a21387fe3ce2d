"""The hibari adapter, installed as a plug-in distribution (plugins/voicefleet-hibari)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import hibari.voices
import numpy as np
import pytest
from voicefleet_hibari.adapter import HibariAdapter, bundled_voices

from voicefleet.tts.adapters import ENTRY_POINT_GROUP, ModelSpec, adapter_classes, create_adapter
from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.errors import InvalidRequest, ModelNotFound

HUB_VOICES = sorted(set(hibari.voices.VOICES) - {"heart"})


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """hibari fetches non-bundled voices with hibari.voices.download: make any call fail."""

    def refuse(url: str, *_: object) -> str:
        pytest.fail(f"hibari tried to download {url}")

    monkeypatch.setattr(hibari.voices, "download", refuse)


@pytest.fixture(scope="module")
def heart() -> HibariAdapter:
    adapter = HibariAdapter(ModelSpec(id="hibari-heart", adapter="hibari"))
    adapter.load()
    return adapter


def audio(adapter: HibariAdapter, text: str, options: SynthesisOptions) -> np.ndarray:
    return np.concatenate(list(adapter.synthesize(text, options)))


def test_found_through_the_entry_point_of_its_own_distribution() -> None:
    assert adapter_classes()["hibari"] is HibariAdapter
    (entry,) = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == "hibari"]
    assert entry.dist is not None and entry.dist.name == "voicefleet-hibari"
    spec = ModelSpec(id="hibari-heart", adapter="hibari")
    assert isinstance(create_adapter(spec), HibariAdapter)


def test_only_the_voice_inside_the_wheel_is_offered(heart: HibariAdapter) -> None:
    assert bundled_voices() == ("heart",) == heart.voices()
    assert HUB_VOICES, "hibari-tts 0.2.1 lists hub voices (emma, fenrir, ...)"


@pytest.mark.parametrize("voice", HUB_VOICES)
def test_a_hub_voice_is_refused_by_name(heart: HibariAdapter, voice: str) -> None:
    with pytest.raises(InvalidRequest, match=f"voice '{voice}' is not bundled"):
        heart.parse_options(voice, {})


def test_an_unknown_voice_is_refused_by_name(heart: HibariAdapter) -> None:
    with pytest.raises(InvalidRequest, match="no voice 'alto' \\(heart\\)"):
        heart.parse_options("alto", {})
    assert heart.parse_options("heart", {}).voice == "heart"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"speed": "0.4"}, "option 'speed' out of range \\(0.5-2\\)"),
        ({"speed": "0"}, "option 'speed' out of range \\(0.5-2\\)"),
        ({"speed": "-1"}, "option 'speed' out of range \\(0.5-2\\)"),
        ({"speed": "2.5"}, "option 'speed' out of range"),
        ({"speed": "nan"}, "option 'speed' out of range"),
        ({"speed": "fast"}, "must be a number"),
        ({"length_scale": "1"}, "unknown option 'length_scale' for hibari \\(allowed: speed\\)"),
    ],
)
def test_session_options_are_validated(
    heart: HibariAdapter, raw: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        heart.parse_options("", raw)


def test_speed_changes_the_pace(heart: HibariAdapter) -> None:
    assert heart.parse_options("", {"speed": "0.5"}).values == {"speed": 0.5}
    text = "Testing one two three."
    normal = audio(heart, text, SynthesisOptions())
    fast = audio(heart, text, heart.parse_options("", {"speed": "2"}))
    assert fast.size < 0.7 * normal.size


def test_the_same_text_gives_the_same_samples_at_24khz(heart: HibariAdapter) -> None:
    runs = [audio(heart, "Testing one two. And three.", SynthesisOptions()) for _ in range(2)]
    assert heart.sample_rate == 24_000
    assert np.array_equal(runs[0], runs[1])
    assert 1.0 < runs[0].size / 24_000 < 6.0
    assert runs[0].dtype == np.float32 and np.max(np.abs(runs[0])) <= 1.0
    # One chunk per sentence: the second arrives separately.
    assert len(list(heart.synthesize("Testing one two. And three.", SynthesisOptions()))) == 2


def test_a_configured_model_file_is_used_and_a_missing_one_is_named(tmp_path: Path) -> None:
    bundled = Path(hibari.voices.ASSETS) / "hibari.onnx"
    adapter = HibariAdapter(ModelSpec(id="h", adapter="hibari", path=str(bundled)))
    adapter.load()
    assert audio(adapter, "Hello.", SynthesisOptions()).size > 0
    missing = tmp_path / "gone.onnx"
    adapter = HibariAdapter(ModelSpec(id="h", adapter="hibari", path=str(missing)))
    with pytest.raises(ModelNotFound, match=f"file not found: {missing}"):
        adapter.load()
