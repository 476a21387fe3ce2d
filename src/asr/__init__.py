"""Speech recognition: one protocol, the faster-whisper adapter (default) and whisperx (extra).

Only the light modules are re-exported: importing faster-whisper costs ~0.6 s, and the
orchestrator's config needs ASRConfig without it. Import the service from voicefleet.asr.service.
"""

from voicefleet.asr.base import ASRError, ASRUnavailable, SpeechRecognizer, Transcript
from voicefleet.asr.config import ASRConfig

__all__ = ["ASRConfig", "ASRError", "ASRUnavailable", "SpeechRecognizer", "Transcript"]
