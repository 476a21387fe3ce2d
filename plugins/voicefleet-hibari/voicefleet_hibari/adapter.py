"""hibari-tts on CPU: a 6 M-parameter Kokoro distillation, 24 kHz, weights inside its wheel.

hibari names each voice after one complete ONNX model. Only "heart" ships in the wheel; the
others ("emma", "fenrir", ...) would be downloaded from a hub on first use, so they are never
offered: a session asking for one gets INVALID_ARGUMENT naming it, and the worker goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

from hibari import Hibari  # type: ignore[import-untyped]
from hibari.voices import ASSETS, DEFAULT, VOICES  # type: ignore[import-untyped]

from voicefleet.audio.pcm import Samples
from voicefleet.tts.adapters.base import (
    AdapterCapabilities,
    ModelSpec,
    SynthesisOptions,
    TTSAdapter,
)
from voicefleet.tts.errors import InvalidRequest, ModelNotFound

_RATE = 24_000
# hibari's documented pace range; below 0.5 one short sentence already lasts many seconds.
SPEED_MIN, SPEED_MAX = 0.5, 2.0
# The noise component is seeded per segment, so the same text always gives the same samples.
_SEED = 0


def bundled_voices() -> tuple[str, ...]:
    """Voices whose weights are inside the hibari-tts wheel (never a hub download)."""
    return tuple(
        name
        for name, voice in VOICES.items()
        if voice.get("bundled") and (Path(ASSETS) / voice["file"]).is_file()
    )


class HibariAdapter(TTSAdapter):
    """Runs hibari's bundled voices with onnxruntime on the CPU."""

    name: ClassVar[str] = "hibari"
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities(streaming=True, cpu_ok=True)
    option_names: ClassVar[frozenset[str]] = frozenset({"speed"})
    positive_options: ClassVar[frozenset[str]] = frozenset({"speed"})
    option_max: ClassVar[Mapping[str, float]] = {"speed": SPEED_MAX}
    option_min: ClassVar[Mapping[str, float]] = {"speed": SPEED_MIN}

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._engines: dict[str, Hibari] = {}

    @property
    def sample_rate(self) -> int:
        """hibari always speaks at 24 kHz."""
        return _RATE

    def load(self) -> None:
        """One ONNX session per bundled voice; a configured `path` replaces the default's file."""
        model = Path(self.spec.path).expanduser() if self.spec.path else None
        if model is not None and not model.is_file():
            raise ModelNotFound(f"hibari model {self.spec.id!r}: file not found: {model}")
        threads = max(1, int(self.spec.options.get("threads", 1)))
        engines = {}
        for voice in self.voices():
            own = str(model) if model is not None and voice == DEFAULT else None
            # A file given, or a bundled voice: hibari opens a local file and downloads nothing.
            engines[voice] = Hibari(voice=voice, model=own, threads=threads)
        self._engines = engines

    def unload(self) -> None:
        """Drop the ONNX sessions and the G2P."""
        self._engines = {}

    def voices(self) -> tuple[str, ...]:
        """The bundled voices ("heart" in hibari-tts 0.2.1); the default one first."""
        bundled = bundled_voices()
        return tuple(sorted(bundled, key=lambda voice: voice != DEFAULT))

    def parse_options(self, voice: str, raw: Mapping[str, str]) -> SynthesisOptions:
        """The base checks and a clear refusal of hub voices."""
        if voice and voice in VOICES and voice not in self.voices():
            raise InvalidRequest(
                f"hibari voice {voice!r} is not bundled in the hibari-tts wheel (hibari would "
                f"download it at run time, which voicefleet never does); model "
                f"{self.spec.id!r} offers: {', '.join(self.voices())}"
            )
        return super().parse_options(voice, raw)

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Samples]:
        """One chunk per sentence hibari finds in the segment."""
        if not self._engines:
            raise RuntimeError(f"hibari model {self.spec.id!r} is not loaded")
        engine = self._engines[options.voice or self.voices()[0]]
        speed = options.values.get("speed", 1.0)
        for chunk in engine.stream(text, speed=speed, seed=_SEED):
            if chunk.size:
                yield chunk
