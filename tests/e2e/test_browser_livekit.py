"""LiveKit mode of the web page in a real browser, as far as it goes without a LiveKit server.

No LiveKit server exists here, so this proves the page's half: it asks the real orchestrator's
`/token` for a token (a valid JWT for the room and identity in Settings), loads the vendored
livekit-client bundle (no CDN), dials the LiveKit URL the orchestrator names, and, when nothing
answers there, shows why in the error line and is back to disconnected. Refusals from `/token`
(a bad identity, an orchestrator without LiveKit keys) show the server's own message, and a
missing bundle says how to build it. That is all a test can prove without a LiveKit server:
joining a room, the published microphone, the agent's track and the data channel are left to
deployment (docker-compose), like the server side in transports/livekit.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from livekit import api
from playwright.async_api import Page, Response

from tests.e2e.test_browser import ARTIFACTS, open_page, page_state, require_chromium, wait_for
from tests.integration.conftest import Stack
from tests.speech import write_wav
from tests.worker_process import OrchestratorProcess, free_port

WEB = Path(__file__).resolve().parents[2] / "src" / "client" / "web"
VENDOR_SH = WEB / "vendor.sh"
BUNDLE = WEB / "vendor" / "livekit-client.esm.mjs"
API_KEY = "devkey"
API_SECRET = "voicefleet-test-secret-0123456789abcdef"  # LiveKit wants 32+ characters
NOT_CONFIGURED = "LiveKit is not configured (LIVEKIT_API_KEY, LIVEKIT_API_SECRET)"
BUNDLE_MISSING = "LiveKit mode needs the livekit-client bundle: run src/client/web/vendor.sh"
# The page has settled after a connect attempt: the button offers Connect again.
SETTLED = "document.getElementById('connect').textContent === 'Connect' && !vf.connected"


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The vendored livekit-client bundle, built by vendor.sh when missing (npm required)."""
    if not BUNDLE.is_file() and shutil.which("npm") is None:
        pytest.fail(
            "LiveKit mode needs the livekit-client bundle and npm is missing: install Node.js 20+ "
            "with npm (`apt-get install -y nodejs npm`), then run src/client/web/vendor.sh"
        )
    # Returns at once when the bundle is up to date; refreshes it after a package-lock change.
    subprocess.run([str(VENDOR_SH)], check=True, timeout=300)
    assert BUNDLE.is_file(), f"vendor.sh ran but {BUNDLE} is missing"
    return BUNDLE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """One Piper worker, so the orchestrators are ready (/readyz); all stopped at teardown."""
    built = Stack(tmp_path_factory.mktemp("livekit"), redis_url)
    try:
        built.worker()
        yield built
    finally:
        built.stop()


@pytest.fixture
def silent_mic(tmp_path: Path) -> Path:
    """The fake microphone: one second of silence (nothing is sent anywhere in these tests)."""
    path = tmp_path / "silence.wav"
    write_wav(path, np.zeros(48_000, dtype=np.int16), 48_000)
    return path


@pytest.fixture
def livekit_orchestrator(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OrchestratorProcess]:
    """An orchestrator with LiveKit keys whose LiveKit URL is a port nobody listens on."""
    # OrchestratorProcess passes its own environment on: the keys must be set before it starts.
    monkeypatch.setenv("LIVEKIT_API_KEY", API_KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", API_SECRET)
    orchestrator = stack.orchestrator(
        transport={"livekit": {"url": f"ws://127.0.0.1:{free_port()}"}}
    )
    yield orchestrator
    orchestrator.stop()


@pytest.fixture
def plain_orchestrator(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OrchestratorProcess]:
    """An orchestrator without LiveKit keys: /token answers 404 livekit_disabled."""
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_API_SECRET", raising=False)
    orchestrator = stack.orchestrator()
    yield orchestrator
    orchestrator.stop()


def pinned_version() -> str:
    """The livekit-client version package.json pins."""
    package = json.loads((WEB / "package.json").read_text())
    return str(package["dependencies"]["livekit-client"])


async def open_livekit_mode(page: Page, url: str) -> None:
    """Load the page, choose LiveKit mode and open Settings (room and identity live there)."""
    await page.goto(url + "/")
    await page.check('input[name="mode"][value="livekit"]')
    await page.click(".settings summary")


async def connect(page: Page) -> tuple[Response, dict[str, Any]]:
    """Click Connect; returns the page's /token response and its JSON body."""
    async with page.expect_response(lambda reply: urlsplit(reply.url).path == "/token") as token:
        await page.click("#connect")
    response = await token.value
    body: dict[str, Any] = await response.json()
    return response, body


async def shown_errors(page: Page) -> str:
    """The page's error line, which must be visible."""
    assert await page.is_visible("#errors"), "the error line is hidden"
    return await page.inner_text("#errors")


async def test_livekit_mode_fetches_a_token_and_reports_an_unreachable_server(
    bundle: Path, livekit_orchestrator: OrchestratorProcess, silent_mic: Path
) -> None:
    """Token, bundle and dial all happen; the dead LiveKit URL ends in a visible error."""
    livekit_url = livekit_orchestrator.config["transport"]["livekit"]["url"]
    async with open_page(require_chromium(), silent_mic) as page:
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        try:
            await open_livekit_mode(page, livekit_orchestrator.url)
            identity = await page.input_value("#identity")
            assert identity.startswith("web-"), identity
            assert await page.input_value("#room") == "voicefleet"

            # A bad identity: /token refuses it (400) and the page shows the server's reason.
            await page.fill("#identity", "not valid!")
            response, body = await connect(page)
            assert response.status == 400 and body["error"] == "bad_request", body
            await wait_for(page, f"{SETTLED} && vf.errors.length === 1", 10)
            assert body["message"] in await shown_errors(page)
            await page.fill("#identity", identity)

            response, body = await connect(page)
            assert response.status == 200, body
            assert body["url"] == livekit_url and body["room"] == "voicefleet", body
            claims = api.TokenVerifier(API_KEY, API_SECRET).verify(body["token"])
            assert claims.identity == identity, claims
            assert claims.video is not None and claims.video.room == "voicefleet", claims

            # The vendored bundle loaded, then dialling the closed port failed.
            await wait_for(page, f"{SETTLED} && vf.errors.length === 2", 30)
            state = await page_state(page)
            assert state["livekitVersion"] == pinned_version(), state
            assert state["state"] == "disconnected", state
            error = state["errors"][1]
            assert error["code"] == "livekit_connect", error
            assert f"could not connect to {livekit_url}" in error["message"], error
            assert f"livekit_connect: could not connect to {livekit_url}" in await shown_errors(
                page
            )
            assert "not connected" in await page.inner_text("#transcript")
            assert page_errors == []
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-livekit.png"))


async def test_livekit_mode_without_keys_shows_the_servers_message(
    bundle: Path, plain_orchestrator: OrchestratorProcess, silent_mic: Path
) -> None:
    """An orchestrator without LiveKit keys: the page says so in the server's words."""
    async with open_page(require_chromium(), silent_mic) as page:
        await open_livekit_mode(page, plain_orchestrator.url)
        response, body = await connect(page)
        assert response.status == 404 and body["error"] == "livekit_disabled", body
        await wait_for(page, f"{SETTLED} && vf.errors.length === 1", 10)
        assert f"livekit_disabled: {NOT_CONFIGURED}" in await shown_errors(page)
        state = await page_state(page)
        assert state["state"] == "disconnected", state
        # Without LiveKit on the server, the 1.4 MB bundle is not even fetched.
        assert state["livekitVersion"] is None, state


async def test_livekit_mode_without_the_bundle_says_how_to_get_it(
    bundle: Path, livekit_orchestrator: OrchestratorProcess, silent_mic: Path
) -> None:
    """A missing vendor/ bundle (served as 404 here, so the real file stays) is explained;
    once it is there, connecting again loads it without a reload."""
    async with open_page(require_chromium(), silent_mic) as page:
        await page.route(f"**/static/vendor/{BUNDLE.name}", lambda route: route.fulfill(status=404))
        await open_livekit_mode(page, livekit_orchestrator.url)
        response, _ = await connect(page)
        assert response.status == 200
        await wait_for(page, f"{SETTLED} && vf.errors.length === 1", 10)
        assert f"livekit_bundle: {BUNDLE_MISSING}" in await shown_errors(page)
        assert (await page_state(page))["livekitVersion"] is None

        await page.unroute(f"**/static/vendor/{BUNDLE.name}")
        await connect(page)
        await wait_for(page, f"{SETTLED} && vf.errors.length === 2", 30)
        assert (await page_state(page))["livekitVersion"] == pinned_version()
