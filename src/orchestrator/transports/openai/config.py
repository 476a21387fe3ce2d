"""The `openai_api:` section of the orchestrator's config: names, limits and aliases."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's voice names, so code written for it runs unchanged: each speaks with a fleet voice.
# (Which is which is a choice, not a likeness: change it in the config.)
DEFAULT_VOICE_ALIASES = {
    **dict.fromkeys(["alloy", "ash", "ballad", "echo", "fable", "onyx", "verse"], "joe"),
    **dict.fromkeys(["coral", "nova", "sage", "shimmer"], "heart"),
}
# OpenAI's model names: any of them means "whichever fleet model speaks the voice".
DEFAULT_SPEECH_MODELS = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
DEFAULT_TRANSCRIPTION_MODELS = ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]


class OpenAIApiConfig(BaseModel):
    """The OpenAI-compatible routes: on or off, their limits, and the names they accept."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve /v1/audio/speech, /transcriptions, /models")
    max_input_chars: int = Field(4096, ge=1, description="longest speech input (OpenAI's limit)")
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="largest transcription upload (OpenAI's limit)"
    )
    max_audio_s: float = Field(600.0, gt=0, description="longest audio a file may decode to")
    max_concurrent_speech: int = Field(16, ge=1, description="speech requests at once (429)")
    max_concurrent_transcriptions: int = Field(
        1, ge=1, description="file transcriptions at once (429); each holds an ASR thread"
    )
    requests_per_ip_per_minute: int = Field(
        240, ge=0, description="requests per client address (429 beyond); 0: no limit"
    )
    voice_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_VOICE_ALIASES),
        description="OpenAI voice name -> fleet voice",
    )
    speech_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SPEECH_MODELS),
        description="model names that mean: the fleet model of the voice",
    )
    transcription_models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRANSCRIPTION_MODELS),
        description="model names that mean: the configured ASR model",
    )
