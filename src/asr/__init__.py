"""Speech recognition: one protocol, the faster-whisper adapter (default) and whisperx (extra)."""
