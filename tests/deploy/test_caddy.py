"""The Caddyfile, checked by the real `caddy` binary (Debian: apt-get install caddy): it validates
with its defaults, picks the TLS issuer docs/operations.md describes, and routes each path to the
orchestrator, to LiveKit or to nowhere (404), WebSocket upgrades included."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.local_http import serve
from tests.worker_process import free_port

CADDYFILE = Path(__file__).resolve().parents[2] / "Caddyfile"
TO_ORCHESTRATOR = (
    "/",
    "/static/app.js",
    "/token",
    "/healthz",
    "/readyz",
    "/v1/models",
    "/v1/audio/speech",
)
TO_LIVEKIT = ("/rtc", "/rtc/validate", "/rtc/v1")
TO_NOWHERE = (
    "/metrics",
    "/debug/rooms",
    "/twirp/livekit.RoomService/ListRooms",
    "/wsx",
    "/x",
    "/v1x",
)


@pytest.fixture(scope="module")
def caddy() -> str:
    """The caddy binary; missing is a failure, not a skip."""
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("caddy is not installed; the deploy tests need it: apt-get install caddy")
    return found


def caddy_env(tmp: Path, **variables: str) -> dict[str, str]:
    """Only the given variables (the Caddyfile's defaults for the rest); state kept in tmp."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        **variables,
    }


def adapt(caddy: str, tmp: Path, **variables: str) -> dict[str, Any]:
    """The JSON config Caddy makes of the Caddyfile."""
    done = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_env(tmp, **variables),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    adapted: dict[str, Any] = json.loads(done.stdout)
    return adapted


@pytest.mark.parametrize(
    "variables",
    [{}, {"VOICEFLEET_DOMAIN": "voice.example.com"}, {"VOICEFLEET_TLS": "internal"}],
    ids=["defaults", "domain", "internal"],
)
def test_caddy_validates_the_caddyfile(
    caddy: str, tmp_path: Path, variables: dict[str, str]
) -> None:
    done = subprocess.run(
        [caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_env(tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _issuers(adapted: dict[str, Any]) -> list[str]:
    policies = adapted["apps"].get("tls", {}).get("automation", {}).get("policies", [])
    return [issuer["module"] for policy in policies for issuer in policy.get("issuers", [])]


def test_tls_is_the_internal_ca_for_localhost_and_acme_for_a_domain(
    caddy: str, tmp_path: Path
) -> None:
    default = adapt(caddy, tmp_path)
    routes = default["apps"]["http"]["servers"]["srv0"]["routes"]
    assert routes[0]["match"] == [{"host": ["localhost"]}]
    # localhost gets Caddy's internal CA from automatic HTTPS; a public name gets ACME.
    assert _issuers(default) == []
    assert _issuers(adapt(caddy, tmp_path, VOICEFLEET_DOMAIN="voice.example.com")) == []
    forced = adapt(caddy, tmp_path, VOICEFLEET_DOMAIN="voice.lan", VOICEFLEET_TLS="internal")
    assert _issuers(forced) == ["internal"]
    assert forced["apps"]["tls"]["automation"]["policies"][0]["subjects"] == ["voice.lan"]


def _upstream(name: str, seen: list[str]) -> web.Application:
    """Answers every path with its own name; /ws echoes WebSocket messages."""

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text=f"{name} {request.path}")

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


@pytest.fixture
async def front_door(caddy: str, tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """Caddy on a free port (plain HTTP) in front of a stand-in orchestrator and LiveKit."""
    seen: list[str] = []
    orchestrator, orchestrator_port = await serve(_upstream("orchestrator", seen))
    livekit, livekit_port = await serve(_upstream("livekit", seen))
    port = free_port()
    env = caddy_env(
        tmp_path,
        VOICEFLEET_DOMAIN=f"http://127.0.0.1:{port}",
        ORCHESTRATOR_UPSTREAM=f"127.0.0.1:{orchestrator_port}",
        LIVEKIT_UPSTREAM=f"127.0.0.1:{livekit_port}",
        CADDY_ADMIN="off",
    )
    log = tmp_path / "caddy.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile",
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.returncode is None, log.read_text()
            assert time.monotonic() < deadline, f"caddy not listening:\n{log.read_text()}"
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}", seen
    finally:
        proc.terminate()
        await proc.wait()
        await orchestrator.cleanup()
        await livekit.cleanup()


async def test_caddy_routes_each_path_to_its_upstream(front_door: tuple[str, list[str]]) -> None:
    base, seen = front_door
    async with aiohttp.ClientSession() as session:
        for upstream, paths in (("orchestrator", TO_ORCHESTRATOR), ("livekit", TO_LIVEKIT)):
            for path in paths:
                async with session.get(base + path) as reply:
                    assert (reply.status, await reply.text()) == (200, f"{upstream} {path}")
        for path in TO_NOWHERE:
            async with session.get(base + path) as reply:
                assert reply.status == 404, path
        async with session.ws_connect(base + "/ws") as ws:
            await ws.send_bytes(b"\x01\x02pcm")
            assert await ws.receive_bytes(timeout=5) == b"\x01\x02pcm"
    assert not set(TO_NOWHERE) & set(seen), "a path that must stay internal reached an upstream"
