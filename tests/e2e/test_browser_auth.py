"""The web page against an orchestrator with `http.auth_token`, in a real browser: the page
itself loads without the token; with the token from `?token=` it opens a WebSocket session
(hello.token) and, in LiveKit mode, gets a room token from `/token` (Bearer header); without it
the server's `unauthorized` is shown in both modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_browser import open_page, page_state, require_chromium, wait_for
from tests.e2e.test_browser_livekit import SETTLED, connect, open_livekit_mode
from tests.integration.conftest import Stack
from tests.speech import write_wav
from tests.worker_process import OrchestratorProcess, free_port

TOKEN = "browser-token-7d41c0"


@pytest.fixture
def guarded(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OrchestratorProcess]:
    """A Piper worker and an orchestrator with a token and LiveKit keys (no LiveKit server)."""
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "voicefleet-test-secret-0123456789abcdef")
    built = Stack(tmp_path, redis_url)
    try:
        built.worker()
        yield built.orchestrator(
            http={"auth_token": TOKEN},
            transport={"livekit": {"url": f"ws://127.0.0.1:{free_port()}"}},
        )
    finally:
        built.stop()


@pytest.fixture
def silent_mic(tmp_path: Path) -> Path:
    path = tmp_path / "silence.wav"
    write_wav(path, np.zeros(48_000, dtype=np.int16), 48_000)
    return path


async def test_the_page_passes_its_token_and_shows_a_refusal(
    guarded: OrchestratorProcess, silent_mic: Path
) -> None:
    async with open_page(require_chromium(), silent_mic) as page:
        # WebSocket mode, no token: the server's refusal is shown and the page is disconnected.
        await page.goto(guarded.url + "/")
        await page.click("#connect")
        await wait_for(page, f"{SETTLED} && vf.errors.length >= 1", 20)
        state = await page_state(page)
        assert state["errors"][0]["code"] == "unauthorized", state

        # With ?token=: a session (hello.token), the microphone streaming.
        await page.goto(f"{guarded.url}/?token={TOKEN}")
        await page.click("#connect")
        await wait_for(page, "vf.connected && vf.state === 'listening' && vf.micChunks > 5", 20)
        assert (await page_state(page))["errors"] == []
        await page.click("#connect")  # Disconnect
        await wait_for(page, SETTLED, 10)

        # LiveKit mode: /token wants the Bearer header the page builds from its Token field.
        await open_livekit_mode(page, guarded.url)
        response, body = await connect(page)
        assert response.status == 401 and body["error"] == "unauthorized", body
        await wait_for(page, SETTLED, 10)
        await page.fill("#token", TOKEN)
        response, body = await connect(page)
        assert response.status == 200 and body["token"], body
