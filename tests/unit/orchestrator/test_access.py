"""Who gets in: the token on the real aiohttp app (every route but the allow-list), the Origin
rule, and the token's comparison."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from voicefleet.orchestrator.access import AccessToken, OriginPolicy
from voicefleet.orchestrator.app import build
from voicefleet.orchestrator.config import OrchestratorConfig

TOKEN = "unit-test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[Any, Any]


@asynccontextmanager
async def orchestrator_app(**http: Any) -> AsyncIterator[Client]:
    """The real app from build() (nothing started: no ASR model, no fleet)."""
    orchestrator = build(OrchestratorConfig.model_validate({"http": http}))
    try:
        async with TestClient(TestServer(orchestrator.app)) as client:
            yield client
    finally:
        await orchestrator.fleet.close()


async def status_and_body(
    client: Client, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with client.get(path, headers=headers) as reply:
        is_json = reply.content_type == "application/json"
        return reply.status, (await reply.json()) if is_json else await reply.text()


async def test_with_a_token_only_the_allow_list_is_open() -> None:
    async with orchestrator_app(auth_token=TOKEN) as client:
        for path in ("/healthz", "/", "/static/app.js", "/metrics"):
            assert (await status_and_body(client, path))[0] == 200, path
        # /readyz answers for itself (503: nothing started here), never 401.
        assert (await status_and_body(client, "/readyz"))[0] == 503
        for path in ("/token?room=r&identity=i", "/no-such-route", "/static/../token"):
            status, body = await status_and_body(client, path)
            assert status == 401, path
            assert body["error"] == "unauthorized" and body["message"], body
            assert TOKEN not in str(body)
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await status_and_body(client, "/token", wrong))[0] == 401
        assert (await status_and_body(client, "/token", {"Authorization": TOKEN}))[0] == 401
        # With the token /token does its own job (no LiveKit keys here: 404 livekit_disabled).
        status, body = await status_and_body(client, "/token?room=r&identity=i", BEARER)
        assert status == 404 and body["error"] == "livekit_disabled"
        assert (await status_and_body(client, "/no-such-route", BEARER))[0] == 404


async def test_metrics_need_the_token_only_with_metrics_auth() -> None:
    async with orchestrator_app(auth_token=TOKEN, metrics_auth=True) as client:
        status, body = await status_and_body(client, "/metrics")
        assert status == 401 and body["error"] == "unauthorized"
        status, text = await status_and_body(client, "/metrics", BEARER)
        assert status == 200 and "voicefleet_sessions_active" in text
        assert (await status_and_body(client, "/healthz"))[0] == 200


async def test_without_a_token_everything_is_open() -> None:
    async with orchestrator_app() as client:
        assert (await status_and_body(client, "/metrics"))[0] == 200
        status, body = await status_and_body(client, "/token?room=r&identity=i")
        assert status == 404 and body["error"] == "livekit_disabled"


async def test_ws_upgrade_with_a_wrong_bearer_header_is_refused_before_the_upgrade() -> None:
    async with orchestrator_app(auth_token=TOKEN) as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws", headers={"Authorization": "Bearer wrong"})
        assert refused.value.status == 401


def test_the_token_is_compared_whole_and_never_shown() -> None:
    token = AccessToken(TOKEN)
    assert token.matches(TOKEN)
    for other in ("", None, TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        assert not token.matches(other)
    assert TOKEN not in repr(token)
    assert TOKEN not in repr(OrchestratorConfig.model_validate({"http": {"auth_token": TOKEN}}))


@pytest.mark.parametrize(
    ("allowed", "origin", "host", "ok"),
    [
        ([], None, "voice.example:8080", True),  # not a browser page: the CLI, a server
        ([], "http://voice.example:8080", "voice.example:8080", True),  # the page itself
        ([], "https://voice.example", "voice.example", True),  # default port on both sides
        ([], "https://VOICE.example:443", "voice.example", True),
        ([], "http://evil.example", "voice.example:8080", False),
        ([], "http://voice.example:9999", "voice.example:8080", False),  # another port
        ([], "https://voice.example", "voice.example:80", False),  # https page, http host
        ([], "null", "voice.example", False),
        ([], "not an origin", "voice.example", False),
        ([], "http://voice.example:8080", None, False),
        (["https://app.example"], "https://app.example", "voice.example", True),
        (["https://app.example"], "https://app.example:444", "voice.example", False),
        (["null"], "null", "voice.example", True),
        (["*"], "http://anything.example", "voice.example", True),
    ],
)
def test_origin_rule(allowed: list[str], origin: str | None, host: str | None, ok: bool) -> None:
    assert OriginPolicy(allowed).allows(origin, host) is ok
