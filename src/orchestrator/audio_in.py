"""Audio in: the microphone at the client's rate -> 16 kHz -> echo canceller -> VAD -> turn events.

Every 20 ms frame becomes a `Voicing` event (voiced or not, as the gated VAD judged it) and
the segmenter's speech events become `Heard` events, in the order the frames caused them, so
the turn controller sees voice onset whatever the segmenter's own state is.
"""

from __future__ import annotations

import dataclasses

from voicefleet.audio.pcm import PcmFormatError, float_to_int16, int16_to_float, s16le_to_int16
from voicefleet.audio.resample import StreamResampler
from voicefleet.orchestrator.echo import EchoCanceller
from voicefleet.orchestrator.protocol import ProtocolError
from voicefleet.orchestrator.turn_events import Heard, TurnEvent, Voicing
from voicefleet.orchestrator.vad import (
    VAD_RATE,
    Pcm16,
    SpeechEnded,
    SpeechPaused,
    VadConfig,
    VadEvent,
    VoiceActivitySegmenter,
)


class AudioIn:
    """One session's microphone path."""

    def __init__(self, input_rate: int, config: VadConfig, echo: EchoCanceller | None) -> None:
        if echo is not None:
            # The agent's voice is cancelled before the gate: it need not be raised as much.
            scale = {**config.state_scale, "speaking": echo.config.speaking_gate_scale}
            config = config.model_copy(update={"state_scale": scale})
        self.segmenter = VoiceActivitySegmenter(config)
        self.echo = echo
        self._resampler = StreamResampler(input_rate, VAD_RATE)

    def push(self, pcm: bytes) -> list[TurnEvent]:
        """PCM16 mono LE at the declared rate; the turn events it caused, in order."""
        pcm16 = self._at_16k(pcm)
        if self.echo is not None:
            pcm16 = self.echo.process(pcm16)
        events: list[TurnEvent] = []
        for voiced, at, caused in self.segmenter.push_frames(pcm16):
            events.append(Voicing(at, voiced))
            events.extend(Heard(self._with_raw_audio(event, at)) for event in caused)
        return events

    def _at_16k(self, pcm: bytes) -> Pcm16:
        try:
            samples = s16le_to_int16(pcm)
        except PcmFormatError as error:
            raise ProtocolError("odd_length_pcm", str(error)) from None
        if self._resampler.in_rate == VAD_RATE:
            return samples  # already 16 kHz
        return float_to_int16(self._resampler.process(int16_to_float(samples)))

    def _with_raw_audio(self, event: VadEvent, at: float) -> VadEvent:
        """In a room that does not echo, the utterance as the microphone heard it."""
        echo = self.echo
        if echo is None or not echo.hears_no_echo:
            return event
        if not isinstance(event, SpeechPaused | SpeechEnded):
            return event
        raw = echo.microphone(round(at * VAD_RATE), event.audio.size)
        return event if raw is None else dataclasses.replace(event, audio=raw)

    def set_state(self, state: str) -> None:
        """Scale the VAD gate for the session's state."""
        self.segmenter.set_state(state)

    def reset(self) -> None:
        """Forget any speech in progress."""
        self.segmenter.reset()
