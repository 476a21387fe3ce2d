"""voicefleet: realtime full-duplex voice with a streaming TTS worker fleet."""
