"""WhisperX (batched faster-whisper behind its own VAD) through the optional `whisperx` extra.

Only transcription is used, not alignment or diarization, and the Whisper model comes from a
local directory. whisperx still loads its VAD model itself (pyannote by default), so that model
must be available offline too; the default engine needs none of this.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from voicefleet.asr.base import ASRError, ASRUnavailable, SpeechRecognizer, Transcript, check_audio
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.faster_whisper import FALLBACK_TEMPERATURES, model_directory
from voicefleet.audio.pcm import Samples

INSTALL_HINT = "engine 'whisperx' needs the whisperx extra: pip install 'voicefleet[whisperx]'"


class WhisperXRecognizer(SpeechRecognizer):
    """A whisperx pipeline on the CPU; whisperx is imported only when the model loads."""

    name: ClassVar[str] = "whisperx"

    def __init__(self, config: ASRConfig) -> None:
        self.config = config
        self._pipeline: Any = None
        # The pipeline swaps its tokenizer and options inside transcribe(): one call at a time.
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        """The configured model directory, or the bundled tiny.en."""
        return model_directory(self.config)

    def load(self) -> None:
        """Import whisperx and open the model; ASRUnavailable when the extra is missing."""
        try:
            import whisperx
        except ImportError as error:
            raise ASRUnavailable(INSTALL_HINT) from error
        path = self.model_path
        if not (path / "model.bin").is_file():
            raise ASRError(f"whisperx model not found: {path} (expected model.bin)")
        fallback = self.config.temperature_fallback
        # whisperx and its VAD raise whatever their dependencies raise; callers get one type.
        try:
            self._pipeline = whisperx.load_model(
                str(path),
                device="cpu",
                compute_type=self.config.compute_type,
                language=self.config.language,
                threads=self.config.cpu_threads,
                asr_options={
                    "beam_size": self.config.beam_size,
                    "without_timestamps": self.config.without_timestamps,
                    "condition_on_previous_text": self.config.condition_on_previous_text,
                    "temperatures": list(FALLBACK_TEMPERATURES if fallback else (0.0,)),
                },
            )
        except Exception as error:
            raise ASRError(f"cannot load whisperx model {path}: {error}") from error

    def transcribe(self, audio: Samples, language: str | None = None) -> Transcript:
        """Transcribe one utterance with whisperx's batched pipeline, in asr.language: the
        pipeline is loaded for one language, so a session's own `language` is not used."""
        if self._pipeline is None:
            raise ASRError("whisperx model is not loaded: call load() first")
        samples = check_audio(audio)
        began = time.perf_counter()
        with self._lock:
            result = self._pipeline.transcribe(samples, language=self.config.language)
        texts = (str(segment.get("text", "")).strip() for segment in result.get("segments", []))
        return Transcript(
            text=" ".join(text for text in texts if text),
            language=str(result.get("language", self.config.language)),
            audio_s=samples.size / self.sample_rate,
            compute_ms=(time.perf_counter() - began) * 1000,
        )
