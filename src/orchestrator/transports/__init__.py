"""Transports that carry a session: WebSocket and LiveKit."""
