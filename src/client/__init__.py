"""Clients: the CLI WebSocket client and the browser page."""
