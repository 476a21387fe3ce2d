"""voicefleet's adapter for hibari-tts, found through the ``voicefleet.tts_adapters`` group."""

from voicefleet_hibari.adapter import HibariAdapter, bundled_voices

__all__ = ["HibariAdapter", "bundled_voices"]
