"""Wyoming's transcription on one connection: `transcribe` (the language), then audio-start,
audio-chunk..., audio-stop, answered with a `transcript` from ASRService. The audio may come
at any rate, width and channels: it is converted to 16 kHz mono float32 as it arrives, and no
more than `max_audio_s` of it is held."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from wyoming.asr import Transcript
from wyoming.audio import AudioFormat
from wyoming.event import Event

from voicefleet.asr.base import ASRError
from voicefleet.asr.service import ASRService
from voicefleet.audio.pcm import Samples
from voicefleet.audio.resample import StreamResampler
from voicefleet.orchestrator.transports.wyoming_events import WyomingError, audio_format

ASR_RATE = 16_000


def to_mono_float(pcm: bytes, width: int, channels: int) -> Samples:
    """Little-endian PCM (unsigned 8-bit, or signed 16, 24 or 32-bit) as float32 in [-1, 1),
    channels averaged. `pcm` holds whole frames (width * channels bytes each)."""
    if width == 1:
        samples = (np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        raw = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        # Into the top three bytes of an int32, then an arithmetic shift back: sign-extended.
        joined = (raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)
        samples = (joined >> 8).astype(np.float32) / 8388608.0
    elif width == 4:
        samples = np.frombuffer(pcm, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"no PCM of {width} bytes per sample")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    mono: Samples = samples.astype(np.float32)
    return mono


class Utterance:
    """One transcription's audio, converted as it arrives; at most `max_s` seconds of it."""

    def __init__(self, audio: AudioFormat, max_s: float) -> None:
        self.format = audio
        self.max_s = max_s
        self._limit = round(max_s * audio.rate)  # input samples (per channel)
        self._received = 0
        self._resampler = StreamResampler(audio.rate, ASR_RATE)
        self._pieces: list[npt.NDArray[np.float32]] = []

    @property
    def seconds(self) -> float:
        """Audio received so far."""
        return self._received / self.format.rate

    def add(self, chunk: AudioFormat, pcm: bytes) -> None:
        """One audio-chunk's payload, in the format audio-start announced; refused (and not
        kept) when its format differs, it holds a partial frame, or it would pass max_s."""
        if (chunk.rate, chunk.width, chunk.channels) != (
            self.format.rate,
            self.format.width,
            self.format.channels,
        ):
            raise WyomingError(
                "audio_format_changed",
                f"audio-chunk is {_describe(chunk)} but audio-start said {_describe(self.format)}",
            )
        frame = chunk.width * chunk.channels
        if len(pcm) % frame:
            raise WyomingError(
                "bad_audio", f"audio-chunk of {len(pcm)} bytes is not whole {frame}-byte frames"
            )
        samples = len(pcm) // frame
        if self._received + samples > self._limit:
            raise WyomingError(
                "audio_too_long", f"more than {self.max_s:g} s of audio for one transcription"
            )
        self._received += samples
        if samples:
            mono = to_mono_float(pcm, chunk.width, chunk.channels)
            self._pieces.append(self._resampler.process(mono))

    def finish(self) -> Samples:
        """All of it at 16 kHz, mono float32 (the utterance ends here)."""
        self._pieces.append(self._resampler.flush())
        audio: Samples = np.concatenate(self._pieces).astype(np.float32)
        self._pieces = []
        return audio


class Listening:
    """The transcription requests of one connection, one utterance at a time."""

    def __init__(self, asr: ASRService, max_audio_s: float) -> None:
        self.asr = asr
        self.max_audio_s = max_audio_s
        self._utterance: Utterance | None = None
        self._overflowed = False  # the utterance passed max_audio_s: its chunks are dropped
        self._language: str | None = None

    def transcribe(self, event: Event) -> None:
        """transcribe: the language of the audio that follows (None: the configured one)."""
        language = event.data.get("language")
        if language is not None and not isinstance(language, str):
            raise WyomingError("bad_event", "transcribe: `language` must be a string")
        self._language = language or None

    def start(self, event: Event) -> None:
        """audio-start: a new utterance in the format it announces."""
        self._utterance = Utterance(audio_format(event), self.max_audio_s)
        self._overflowed = False

    def chunk(self, event: Event) -> None:
        """audio-chunk: more of the utterance."""
        if self._overflowed:
            return  # the rest of an utterance already refused
        if self._utterance is None:
            raise WyomingError("audio_start_required", "audio-chunk before audio-start")
        try:
            self._utterance.add(audio_format(event), event.payload or b"")
        except WyomingError as error:
            if error.code == "audio_too_long":
                self._utterance, self._overflowed = None, True
            raise

    async def stop(self) -> Event | None:
        """audio-stop: the transcript event (None after an utterance refused as too long)."""
        if self._overflowed:
            self._overflowed = False  # its error was sent when it passed the limit
            return None
        utterance, self._utterance = self._utterance, None
        if utterance is None:
            raise WyomingError("audio_start_required", "audio-stop before audio-start")
        language, self._language = self._language, None
        try:
            result = await self.asr.transcribe(utterance.finish(), language)
        except ASRError as error:
            raise WyomingError("asr_failed", str(error)) from None
        return Transcript(text=result.text.strip(), language=result.language).event()


def _describe(audio: AudioFormat) -> str:
    return f"{audio.rate} Hz, {audio.width} bytes, {audio.channels} channel(s)"
