"""The adapter protocol: the only code a new TTS model needs.

An adapter turns a text segment into float32 mono PCM at the model's native rate. Everything
else (segmentation, resampling to 48 kHz, loudness, 20 ms framing, pacing, PAUSE/RESUME/STOP,
metrics) is done by the worker, once, for every adapter.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voicefleet.audio.pcm import Samples
from voicefleet.tts.errors import InvalidRequest

_PUBLIC_VOICE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class ModelSpec(BaseModel):
    """One entry of a worker's model catalog (from worker.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    adapter: str = Field(min_length=1)
    path: str | None = None
    languages: tuple[str, ...] = ("en-US",)
    options: dict[str, float | int | str | bool] = Field(default_factory=dict)
    #: Public voice names (what hello.voice, FleetTTS(voice=...) and the standard APIs use)
    #: -> the adapter's own voice name ("" for the model's default voice). Unique across a
    #: worker's catalog, and by convention across the fleet.
    voices: dict[str, str] = Field(default_factory=dict)

    @field_validator("voices")
    @classmethod
    def _public_names(cls, voices: dict[str, str]) -> dict[str, str]:
        for name in voices:
            if not _PUBLIC_VOICE.fullmatch(name):
                raise ValueError(
                    f"voice name {name!r}: lowercase letters, digits, '-' and '_', at most 64"
                )
        return voices


@dataclass(frozen=True)
class AdapterCapabilities:
    """What an adapter's models can do; published in the worker's registry record."""

    streaming: bool = True
    zero_shot: bool = False
    lora: bool = False
    cpu_ok: bool = True
    emotive_zero_prompt: bool = False


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-session options, validated against the adapter's declared option names."""

    voice: str = ""
    values: Mapping[str, float] = field(default_factory=dict)


DEFAULT_OPTION_MAX = 10.0


class TTSAdapter(ABC):
    """Base class of every adapter. Methods are blocking; the worker calls them off the loop."""

    name: ClassVar[str]
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities()
    #: Numeric per-session options StartSession may set; anything else is INVALID_ARGUMENT.
    option_names: ClassVar[frozenset[str]] = frozenset()
    #: Options that must be > 0 (the others must be >= 0).
    positive_options: ClassVar[frozenset[str]] = frozenset({"length_scale"})
    #: Largest value of an option (DEFAULT_OPTION_MAX unless listed): one huge length_scale
    #: would make a single segment take unbounded memory and time.
    option_max: ClassVar[Mapping[str, float]] = {}
    #: Smallest value of an option (0 unless listed; see positive_options).
    option_min: ClassVar[Mapping[str, float]] = {}
    warm_up_text: ClassVar[str] = "Warm up, one two three."

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @classmethod
    def check_options(cls, spec: ModelSpec) -> None:
        """Refuse a model's options from the worker config (raise ValueError naming the model
        and the option); the worker calls it at start-up, before any model loads. The base
        accepts anything."""
        return None

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Native output rate of the loaded model."""

    @abstractmethod
    def load(self) -> None:
        """Load the model into memory; raise ModelNotFound naming a missing path."""

    @abstractmethod
    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Samples]:
        """Yield float32 mono chunks in [-1, 1] at sample_rate for one text segment."""

    def unload(self) -> None:
        """Free the model's memory (override if you hold a model)."""
        return None

    def warm_up(self) -> None:
        """Run one short synthesis so the first real request pays no lazy initialisation."""
        for _ in self.synthesize(self.warm_up_text, SynthesisOptions()):
            pass

    def voices(self) -> tuple[str, ...]:
        """Voice names StartSession accepts (empty: only the default voice)."""
        return ()

    def parse_options(self, voice: str, raw: Mapping[str, str]) -> SynthesisOptions:
        """Validate a session's voice and options; raise InvalidRequest with the bad key."""
        if voice and voice not in self.voices():
            known = ", ".join(self.voices()) or "only the default voice"
            raise InvalidRequest(f"model {self.spec.id!r} has no voice {voice!r} ({known})")
        values: dict[str, float] = {}
        for key, text in raw.items():
            if key not in self.option_names:
                allowed = ", ".join(sorted(self.option_names)) or "none"
                raise InvalidRequest(f"unknown option {key!r} for {self.name} (allowed: {allowed})")
            try:
                value = float(text)
            except ValueError:
                raise InvalidRequest(f"option {key!r} must be a number, got {text!r}") from None
            top = self.option_max.get(key, DEFAULT_OPTION_MAX)
            bottom = self.option_min.get(key, 0.0)
            if (
                not math.isfinite(value)
                or value < bottom
                or (value == 0 and key in self.positive_options)
                or value > top
            ):
                raise InvalidRequest(f"option {key!r} out of range ({bottom:g}-{top:g}): {text!r}")
            values[key] = value
        return SynthesisOptions(voice=voice, values=values)
