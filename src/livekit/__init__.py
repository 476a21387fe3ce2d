"""voicefleet for livekit-agents: `AgentSession(tts=FleetTTS(...))` speaks through the fleet.

This package is `voicefleet.livekit`; inside it, `livekit` still means the LiveKit SDK (every
import here is absolute).
"""

from voicefleet.livekit.tts import FleetTTS

__all__ = ["FleetTTS"]
