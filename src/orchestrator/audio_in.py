"""Audio in: the microphone at the client's rate -> 16 kHz -> VAD -> turn events.

Every 20 ms frame becomes a `Voicing` event (voiced or not, as the gated VAD judged it) and
the segmenter's speech events become `Heard` events, in the order the frames caused them, so
the turn controller sees voice onset whatever the segmenter's own state is.
"""

from __future__ import annotations

import numpy as np

from voicefleet.audio.pcm import PcmFormatError, float_to_s16le, s16le_to_float
from voicefleet.audio.resample import StreamResampler
from voicefleet.orchestrator.protocol import ProtocolError
from voicefleet.orchestrator.turn_events import Heard, TurnEvent, Voicing
from voicefleet.orchestrator.vad import VAD_RATE, VadConfig, VoiceActivitySegmenter


class AudioIn:
    """One session's microphone path."""

    def __init__(self, input_rate: int, config: VadConfig) -> None:
        self.segmenter = VoiceActivitySegmenter(config)
        self._resampler = StreamResampler(input_rate, VAD_RATE)

    def push(self, pcm: bytes) -> list[TurnEvent]:
        """PCM16 mono LE at the declared rate; the turn events it caused, in order."""
        try:
            samples = s16le_to_float(pcm)
        except PcmFormatError as error:
            raise ProtocolError("odd_length_pcm", str(error)) from None
        resampled = self._resampler.process(samples)
        pcm16 = np.frombuffer(float_to_s16le(resampled), dtype="<i2").astype(np.int16)
        events: list[TurnEvent] = []
        for voiced, at, caused in self.segmenter.push_frames(pcm16):
            events.append(Voicing(at, voiced))
            events.extend(Heard(event) for event in caused)
        return events

    def set_state(self, state: str) -> None:
        """Scale the VAD gate for the session's state."""
        self.segmenter.set_state(state)

    def reset(self) -> None:
        """Forget any speech in progress."""
        self.segmenter.reset()
