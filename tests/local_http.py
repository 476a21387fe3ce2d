"""Serving a test's own aiohttp app on loopback (a fake LLM, an HTTP tool, an upstream)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve(app: web.Application, port: int = 0, **runner: Any) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1:`port` (0: a free one); the runner (`cleanup()` stops it) and
    the port. `runner` goes to web.AppRunner (e.g. shutdown_timeout)."""
    started = web.AppRunner(app, **runner)
    await started.setup()
    await web.TCPSite(started, "127.0.0.1", port).start()
    return started, started.addresses[0][1] if port == 0 else port
