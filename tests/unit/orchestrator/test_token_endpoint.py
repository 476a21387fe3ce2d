"""GET /token on the real aiohttp app (no LiveKit server is needed to mint tokens)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livekit import api

from voicefleet.orchestrator.app import build
from voicefleet.orchestrator.config import OrchestratorConfig


async def test_token_endpoint_mints_a_verifiable_room_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "secret-that-is-long-enough-for-hs256-0123456789")
    config = OrchestratorConfig.model_validate(
        {"transport": {"livekit": {"url": "ws://livekit:7880", "public_url": "wss://example.test"}}}
    )
    orchestrator = build(config)
    async with TestClient(TestServer(orchestrator.app)) as client:
        reply = await client.get("/token", params={"room": "demo", "identity": "alice"})
        assert reply.status == 200
        body = await reply.json()
        assert body["url"] == "wss://example.test"
        claims = api.TokenVerifier(
            "devkey", "secret-that-is-long-enough-for-hs256-0123456789"
        ).verify(body["token"])
        assert claims.identity == "alice" and claims.video.room == "demo"
        bad = await client.get("/token", params={"room": "no spaces", "identity": "alice"})
        assert bad.status == 400 and "room" in (await bad.json())["message"]
    await orchestrator.fleet.close()
