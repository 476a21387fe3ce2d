"""What the fleet client speaks with: its settings, frames, errors and worker sessions."""

from __future__ import annotations

from dataclasses import dataclass

from voicefleet.fleet.errors import NoWorkerAvailable, UnknownVoice
from voicefleet.rpc.tts_client import TTSClient


class SpeechFailed(Exception):
    """The reply could not be spoken; `code` is the error code for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def unroutable(cls, error: NoWorkerAvailable) -> SpeechFailed:
        """What a routing error means to the client: `unknown_voice` or `tts_failed`."""
        code = "unknown_voice" if isinstance(error, UnknownVoice) else "tts_failed"
        return cls(code, str(error))


@dataclass(frozen=True)
class SpeakerSettings:
    """Deadlines and limits of the fleet client."""

    start_timeout_s: float = 3.0  # StartSession
    control_timeout_s: float = 1.0  # PAUSE / RESUME / STOP
    end_timeout_s: float = 2.0  # EndSession
    first_frame_timeout_s: float = 10.0  # text sent, no frame yet
    stall_timeout_s: float = 1.5  # audio owed (input ended), no frame for this long
    max_chunk_chars: int = 1000  # longest TextChunk sent (the worker's limit is larger)
    max_reply_chars: int = 20_000  # longer replies are cut here (reply_truncated)


@dataclass(frozen=True)
class SpeechFrame:
    """20 ms of reply audio and what it speaks: characters [start, end) of the reply's text."""

    pcm: bytes
    final: bool
    segment: int = 0
    start: int = 0
    end: int = 0
    attempt: int = 0
    position: int = 0  # frame index within its segment (across failovers)


@dataclass
class WorkerSession:
    """A session this client opened on one worker."""

    name: str
    address: str
    client: TTSClient
    session: str
