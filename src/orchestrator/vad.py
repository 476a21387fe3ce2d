"""Voice activity: webrtcvad on 20 ms frames behind an adaptive, state-aware energy gate, and
the utterance segmenter that turns voiced frames into speech start / pause / resume / end.

A frame counts as speech only when webrtcvad says so AND its energy clears the gate: the noise
floor (a low percentile of recent frame energies) plus a margin, raised by the session's state
(e.g. x2 in amplitude while the agent speaks, so its own voice leaking into the microphone does
not barge in). A frame the gate rejects is silence for every purpose, end-of-speech included.

Times are stream seconds (frames x 20 ms), so tests and benchmarks can compare them with
positions in a recording.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import webrtcvad
from pydantic import BaseModel, ConfigDict, Field

VAD_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = VAD_RATE * FRAME_MS // 1000  # 320
Pcm16 = npt.NDArray[np.int16]


class VadConfig(BaseModel):
    """Detector and segmenter settings."""

    model_config = ConfigDict(extra="forbid")

    aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode")
    start_ms: int = Field(100, ge=20, description="voiced time that starts speech")
    hangover_ms: int = Field(600, ge=60, description="silence that ends speech")
    speculate_ms: int = Field(60, ge=20, description="silence after which a pause is reported")
    pre_roll_ms: int = Field(300, ge=0, description="audio kept from before the start")
    max_utterance_s: float = Field(30.0, gt=1, description="longer speech is cut here")
    noise_percentile: float = Field(20.0, gt=0, lt=100)
    noise_window_s: float = Field(4.0, gt=0.2)
    gate_db: float = Field(9.0, ge=0, description="margin above the noise floor")
    min_energy_dbfs: float = Field(-50.0, description="frames quieter than this are silence")
    state_scale: dict[str, float] = Field(
        default_factory=lambda: {"speaking": 2.0},
        description="gate multiplier (amplitude) per session state",
    )


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began at `at` (stream seconds of its first voiced frame)."""

    at: float


@dataclass(frozen=True)
class SpeechPaused:
    """Silence began inside speech; `audio` is the utterance so far (speculative transcription)."""

    at: float
    audio: Pcm16


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back before the hangover ran out."""

    at: float


@dataclass(frozen=True)
class SpeechEnded:
    """The utterance is over: `at` is its last voiced frame's end, `decided_at` the decision."""

    at: float
    decided_at: float
    audio: Pcm16
    voiced_s: float


VadEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


class EnergyGate:
    """The adaptive noise floor and the state-scaled threshold."""

    # The floor is a percentile of seconds of history: recomputing it every 100 ms instead of
    # every frame changes it by nothing audible and was ~14 % of the orchestrator's CPU at 8
    # sessions (py-spy, bench/load.py).
    REFRESH_FRAMES = 5

    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self.scale = 1.0
        # The last noise_window_s of frame energies, a ring (a percentile ignores the order).
        self._history = np.zeros(int(config.noise_window_s * 1000 / FRAME_MS), np.float64)
        self._learnt = 0  # frames learnt in all
        self._floor: float | None = None
        self._stale = 0  # frames learnt since the floor was computed

    @property
    def noise_floor_db(self) -> float:
        """The current floor estimate (dBFS), at most REFRESH_FRAMES frames old."""
        if self._learnt < 10:
            return self.config.min_energy_dbfs
        if self._floor is None or self._stale >= self.REFRESH_FRAMES:
            history = self._history[: min(self._learnt, self._history.size)]
            self._floor = percentile(history, self.config.noise_percentile)
            self._stale = 0
        return self._floor

    @property
    def threshold_db(self) -> float:
        """Energy a frame needs to count as speech."""
        base = max(self.noise_floor_db + self.config.gate_db, self.config.min_energy_dbfs)
        return base + 20 * math.log10(self.scale)

    def admit(self, energy_db: float) -> bool:
        """Judge one frame, then learn from it."""
        passed = energy_db >= self.threshold_db
        self._history[self._learnt % self._history.size] = energy_db
        self._learnt += 1
        self._stale += 1
        return passed


def percentile(values: npt.NDArray[np.float64], q: float) -> float:
    """np.percentile's default (linear) for one 1-D array, without its overhead (~15x less on
    the 200 values of a noise window: this runs every few frames in every session)."""
    rank = q / 100 * (values.size - 1)
    below = math.floor(rank)
    above = min(below + 1, values.size - 1)
    parted = np.partition(values, (below, above))
    low, high = float(parted[below]), float(parted[above])
    return low + (high - low) * (rank - below)


def frame_energy_db(frame: Pcm16) -> float:
    """Mean power of a frame in dBFS (full-scale square wave = 0)."""
    return 10 * math.log10(energy(frame) / max(frame.size, 1) + 1e-12)


def energy(pcm: Pcm16) -> float:
    """Sum of the squared samples, full scale = 1 each (a dot product: this runs on every
    block of every session)."""
    samples = pcm.astype(np.float32)
    return float(np.dot(samples, samples)) / (32768.0 * 32768.0)


class VoiceActivitySegmenter:
    """Feed 16 kHz PCM of any length; get speech events."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self.gate = EnergyGate(self.config)
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames = 0
        self._start_frames = max(1, self.config.start_ms // FRAME_MS)
        self._window: collections.deque[bool] = collections.deque(maxlen=self._start_frames + 2)
        self._pre_roll: collections.deque[Pcm16] = collections.deque(
            maxlen=max(1, self.config.pre_roll_ms // FRAME_MS)
        )
        self._utterance: list[Pcm16] = []
        self._in_speech = False
        self._silence_frames = 0
        self._voiced_frames = 0
        self._last_voiced_end = 0.0
        self._paused = False
        self._last_voiced = False
        self._hangover_ms = self.config.hangover_ms

    @property
    def hangover_ms(self) -> int:
        """The silence that will end the speech in progress."""
        return self._hangover_ms

    def set_hangover(self, ms: int, pause_at: float) -> bool:
        """End the current pause after `ms` of silence instead of the configured hangover.

        Applies only while the pause that began at `pause_at` (SpeechPaused.at) still runs;
        speech resuming, a new utterance or reset() bring back the configured hangover.
        Returns whether it applied. A hangover already exceeded ends speech at the next frame.
        """
        if not (self._in_speech and self._paused and round(self._last_voiced_end, 3) == pause_at):
            return False
        self._hangover_ms = ms
        return True

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and SpeechEnded."""
        return self._in_speech

    @property
    def voiced_s(self) -> float:
        """Voiced time of the utterance in progress (0 outside speech)."""
        return self._voiced_frames * FRAME_MS / 1000 if self._in_speech else 0.0

    @property
    def now(self) -> float:
        """Stream seconds processed so far."""
        return self._frames * FRAME_MS / 1000

    def set_state(self, state: str) -> None:
        """Scale the gate for the session's state (unknown states use x1)."""
        self.gate.scale = self.config.state_scale.get(state, 1.0)

    def push(self, pcm: Pcm16) -> list[VadEvent]:
        """Process audio; return the events it caused, in order."""
        return [event for _, _, caused in self.push_frames(pcm) for event in caused]

    def push_frames(self, pcm: Pcm16) -> list[tuple[bool, float, list[VadEvent]]]:
        """Process audio; per whole 20 ms frame: (voiced, end in stream seconds, its events)."""
        data = np.concatenate([self._pending, pcm.astype(np.int16, copy=False)])
        whole = data.size // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = data[whole:].copy()
        frames: list[tuple[bool, float, list[VadEvent]]] = []
        for start in range(0, whole, FRAME_SAMPLES):
            caused = self._frame(data[start : start + FRAME_SAMPLES])
            frames.append((self._last_voiced, self.now, caused))
        return frames

    def reset(self) -> None:
        """Forget any speech in progress (e.g. the session was interrupted by text input)."""
        self._in_speech = False
        self._utterance = []
        self._window.clear()
        self._silence_frames = 0
        self._paused = False
        self._hangover_ms = self.config.hangover_ms

    def _frame(self, frame: Pcm16) -> list[VadEvent]:
        self._frames += 1
        energy = frame_energy_db(frame)
        admitted = self.gate.admit(energy)
        voiced = admitted and self._vad.is_speech(frame.tobytes(), VAD_RATE)
        self._last_voiced = voiced
        end = self.now
        if not self._in_speech:
            return self._while_silent(frame, voiced, end)
        return self._while_speaking(frame, voiced, end)

    def _while_silent(self, frame: Pcm16, voiced: bool, end: float) -> list[VadEvent]:
        self._pre_roll.append(frame)
        self._window.append(voiced)
        if sum(self._window) < self._start_frames:
            return []
        # Speech starts at the first voiced frame of the window that triggered it.
        first_voiced = len(self._window) - 1 - list(self._window).index(True)
        started = end - (first_voiced + 1) * FRAME_MS / 1000
        self._in_speech = True
        self._utterance = list(self._pre_roll)
        self._pre_roll.clear()
        self._window.clear()
        self._voiced_frames = self._start_frames
        self._silence_frames = 0
        self._paused = False
        self._last_voiced_end = end
        return [SpeechStarted(at=round(started, 3))]

    def _while_speaking(self, frame: Pcm16, voiced: bool, end: float) -> list[VadEvent]:
        self._utterance.append(frame)
        events: list[VadEvent] = []
        if voiced:
            self._voiced_frames += 1
            self._last_voiced_end = end
            self._silence_frames = 0
            if self._paused:
                self._paused = False
                self._hangover_ms = self.config.hangover_ms
                events.append(SpeechResumed(at=round(end - FRAME_MS / 1000, 3)))
        else:
            self._silence_frames += 1
        silence_ms = self._silence_frames * FRAME_MS
        if not voiced and silence_ms == self.config.speculate_ms:
            self._paused = True
            events.append(
                SpeechPaused(at=round(self._last_voiced_end, 3), audio=self.utterance_audio())
            )
        too_long = len(self._utterance) * FRAME_MS / 1000 >= self.config.max_utterance_s
        if silence_ms >= self._hangover_ms or too_long:
            events.append(
                SpeechEnded(
                    at=round(self._last_voiced_end, 3),
                    decided_at=round(end, 3),
                    audio=self.utterance_audio(),
                    voiced_s=self._voiced_frames * FRAME_MS / 1000,
                )
            )
            self.reset()
        return events

    def utterance_audio(self) -> Pcm16:
        """The utterance in progress so far (pre-roll included); empty outside speech."""
        return np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
