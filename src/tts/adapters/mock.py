"""The mock adapter: deterministic speech-shaped audio with no model. Also the template to copy.

Writing an adapter (see docs/adapters.md):
1. Subclass TTSAdapter, set `name`, `capabilities` and the `option_names` sessions may set.
2. `load()` reads the model (raise ModelNotFound naming the path when it is missing);
   `sample_rate` is the model's native rate.
3. `synthesize()` yields float32 mono chunks at that rate for one text segment. It is blocking
   and runs on a worker thread; resampling, loudness, framing and PAUSE/STOP are not its job.
4. Register the class under the `voicefleet.tts_adapters` entry-point group.

The mock turns each word into a harmonic "syllable" (a 110-150 Hz voice with two formant-like
partials, attack and release), with gaps between words and longer ones at punctuation. The same
text always gives the same samples, so totals can be compared exactly. Option `rtf` makes it
spend that fraction of the audio's duration computing (for load tests); `length_scale`
stretches it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np

from voicefleet.audio.pcm import Samples
from voicefleet.tts.adapters.base import (
    AdapterCapabilities,
    ModelSpec,
    SynthesisOptions,
    TTSAdapter,
)

_RATE = 16_000
_MS_PER_CHAR = 65.0
_WORD_GAP_S = 0.06
_PUNCT_GAP_S = 0.25


class MockAdapter(TTSAdapter):
    """Deterministic speech-shaped signal; no model file."""

    name: ClassVar[str] = "mock"
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities(streaming=True, cpu_ok=True)
    option_names: ClassVar[frozenset[str]] = frozenset({"rtf", "length_scale"})
    # rtf sleeps on a synthesis thread: beyond 2 one session could hold the threads for long.
    option_max: ClassVar[Mapping[str, float]] = {"rtf": 2.0}

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._loaded = False

    @property
    def sample_rate(self) -> int:
        """The mock speaks at 16 kHz so the worker's resampler is always exercised."""
        return _RATE

    def load(self) -> None:
        """Nothing to read; a real adapter opens its model file here."""
        self._loaded = True

    def unload(self) -> None:
        """Forget the (pretend) model."""
        self._loaded = False

    def voices(self) -> tuple[str, ...]:
        """Two pitches, to show how voices are declared."""
        return ("low", "high")

    def synthesize(self, text: str, options: SynthesisOptions) -> Iterator[Samples]:
        """Yield one chunk per word, each ending in its gap."""
        length_scale = options.values.get(
            "length_scale", float(self.spec.options.get("length_scale", 1.0))
        )
        rtf = options.values.get("rtf", float(self.spec.options.get("rtf", 0.0)))
        base_f0 = {"low": 100.0, "high": 180.0}.get(options.voice, 130.0)
        for word in text.split():
            chunk = self._word(word, base_f0, length_scale)
            if rtf > 0:
                time.sleep(rtf * chunk.size / _RATE)
            yield chunk

    def _word(self, word: str, base_f0: float, length_scale: float) -> Samples:
        letters = sum(ch.isalnum() for ch in word)
        voiced_s = max(1, letters) * _MS_PER_CHAR / 1000.0 * length_scale
        gap_s = _PUNCT_GAP_S if word[-1] in ".,;:!?" else _WORD_GAP_S
        seed = zlib.crc32(word.lower().encode())
        f0 = base_f0 + (seed % 40) - 20
        t = np.arange(int(voiced_s * _RATE)) / _RATE
        partials = (
            np.sin(2 * np.pi * f0 * t)
            + 0.5 * np.sin(2 * np.pi * (500 + seed % 300) * t)
            + 0.25 * np.sin(2 * np.pi * (1500 + seed % 700) * t)
        )
        ramp = min(t.size // 2, int(0.02 * _RATE))
        envelope = np.ones_like(t)
        if ramp:
            envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
            envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
        voiced = 0.3 * partials * envelope
        return np.concatenate([voiced, np.zeros(int(gap_s * _RATE))]).astype(np.float32)
