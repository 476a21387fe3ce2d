"""Shared audio primitives: PCM conversion, resampling, framing, loudness."""
