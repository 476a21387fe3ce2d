"""The web page in a real browser against a real stack.

Debian's chromium runs headless under Playwright with a fake microphone that plays a WAV of
Piper speech; a real Piper worker and a real orchestrator answer. The page must connect,
show the final transcript, play the echo reply through its AudioWorklet player, and flush
playback at once when the person presses Interrupt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stack
from tests.speech import piper_speech, with_silence, write_wav
from voicefleet.asr.wer import word_error_rate

try:
    from playwright.async_api import Page, async_playwright
except ModuleNotFoundError as error:  # pragma: no cover - a clearer message than the import's
    raise ModuleNotFoundError(
        "the browser test needs Playwright for Python: pip install 'playwright>=1.65' "
        "(it drives Debian's chromium; never run `playwright install`)"
    ) from error

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
MIC_RATE = 48_000
UTTERANCE = "Hello, can you hear me?"
# Long enough (~10 s of speech) to still be playing when the test interrupts it.
LONG_REPLY = (
    "This is a long reply, so that the agent is still speaking when the person interrupts it. "
    "It goes on for several sentences on purpose, and nothing in it matters but its length. "
    "If you can still hear this sentence, the interrupt did not work."
)
SAMPLES_48K_PER_MS = 48


def chromium_args(wav: Path) -> list[str]:
    """Headless, no sandbox or GPU, and a microphone that plays `wav` once without asking."""
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
    ]


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[Stack]:
    """One Piper worker and one orchestrator (echo responder), stopped at teardown."""
    built = Stack(tmp_path, redis_url)
    try:
        built.worker()
        built.orchestrator()
        yield built
    finally:
        built.stop()


def write_mic_wav(path: Path, utterance: str) -> Path:
    """The fake microphone: 1 s of silence, the utterance, 3 s of silence (48 kHz, 16-bit)."""
    speech = piper_speech(utterance, MIC_RATE)
    write_wav(path, with_silence(speech, MIC_RATE, before_s=1.0, after_s=3.0), MIC_RATE)
    return path


@pytest.fixture
def mic_wav(tmp_path: Path) -> Path:
    """The fake microphone speaking UTTERANCE."""
    return write_mic_wav(tmp_path / "mic.wav", UTTERANCE)


def require_chromium() -> Path:
    """Debian's chromium; the test fails (not skips) when it is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test drives Debian's chromium. Install it with "
            "`apt-get install -y chromium` (not `playwright install`)."
        )
    return CHROMIUM


@asynccontextmanager
async def open_page(chromium: Path, mic_wav: Path) -> AsyncIterator[Page]:
    """A page in headless chromium with the fake microphone; the browser closes on exit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=chromium_args(mic_wav)
        )
        try:
            yield await browser.new_page(viewport={"width": 900, "height": 820})
        finally:
            await browser.close()


async def page_state(page: Page) -> dict[str, Any]:
    """A snapshot of `window.voicefleet` (its plain data)."""
    state: dict[str, Any] = await page.evaluate("() => ({ ...window.voicefleet })")
    return state


async def wait_for(page: Page, condition: str, timeout_s: float) -> None:
    """Wait until a JS expression over `vf` (window.voicefleet) is true; say what it saw if not."""
    try:
        await page.wait_for_function(
            f"() => {{ const vf = window.voicefleet; return {condition}; }}",
            polling=20,
            timeout=timeout_s * 1000,
        )
    except Exception as error:
        raise AssertionError(
            f"not true within {timeout_s} s: {condition}\npage state: {await page_state(page)}"
        ) from error


async def test_conversation_in_the_browser(stack: Stack, mic_wav: Path) -> None:
    """The whole page against the whole stack; a screenshot lands in artifacts/browser.png."""
    chromium = require_chromium()
    async with open_page(chromium, mic_wav) as page:
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        try:
            await converse(page, stack.orchestrators[0].url)
            assert page_errors == []
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser.png"))
        await page.click("#connect")  # Disconnect
        await wait_for(page, "!vf.connected && vf.state === 'disconnected'", 5)


async def converse(page: Page, url: str) -> None:
    """Connect, speak through the fake microphone, hear the echo, interrupt a long reply."""
    await page.goto(url + "/")
    await page.click("#connect")
    await wait_for(page, "vf.connected && vf.state === 'listening'", 10)
    state = await page_state(page)
    assert state["inputSampleRate"] == 16_000, state

    # The fake microphone speaks after 1 s; the orchestrator transcribes and echoes it.
    await wait_for(page, "vf.transcripts.length > 0", 20)
    heard = " ".join((await page_state(page))["transcripts"])
    assert word_error_rate(UTTERANCE, heard) <= 0.2, heard
    await wait_for(page, f"vf.playedNonSilentSamples > {500 * SAMPLES_48K_PER_MS}", 15)
    await wait_for(page, "vf.state === 'listening' && vf.agentText.length > 0", 15)
    assert word_error_rate(UTTERANCE, (await page_state(page))["agentText"]) <= 0.2

    await check_interrupt_flushes_playback(page)

    state = await page_state(page)
    assert state["errors"] == [], state["errors"]


async def check_interrupt_flushes_playback(page: Page) -> None:
    """A long reply plays; Interrupt flushes the player and the server confirms the cancel."""
    await page.fill("#say-text", LONG_REPLY)
    started_at = (await page_state(page))["playedNonSilentSamples"]
    await page.click("#say-button")
    # Half a second of the new reply has been heard: playback is well under way.
    heard = started_at + 500 * SAMPLES_48K_PER_MS
    await wait_for(page, f"vf.state === 'speaking' && vf.playedNonSilentSamples > {heard}", 20)

    before = await page_state(page)
    await page.click("#interrupt")
    clicked = time.monotonic()
    await wait_for(page, f"vf.flushes > {before['flushes']}", 1)
    await wait_for(page, "vf.cancels.some((c) => c.reason === 'interrupt')", 2)

    # Playback stops within 200 ms of the click and stays stopped.
    await page.wait_for_timeout(max(0.0, clicked + 0.2 - time.monotonic()) * 1000)
    stopped_at = (await page_state(page))["playedNonSilentSamples"]
    await page.wait_for_timeout(500)
    after = await page_state(page)
    assert after["playedNonSilentSamples"] == stopped_at, (stopped_at, after)
    assert after["state"] == "listening", after
