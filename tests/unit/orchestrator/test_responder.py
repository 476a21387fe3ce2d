"""The responder against a real local server speaking the OpenAI streaming format."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from tests.local_http import serve
from voicefleet.orchestrator.responder import (
    EchoResponder,
    OpenAIConfig,
    OpenAIResponder,
    Responder,
    ResponderConfig,
    ResponderError,
    ResponderHTTPError,
    ResponderUnavailable,
    Turn,
    create_responder,
)

KEY_ENV = "VOICEFLEET_TEST_RESPONDER_KEY"


def _chunk(delta: dict[str, Any]) -> bytes:
    event = {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(event)}\n\n".encode()


class FakeOpenAI:
    """A chat-completions endpoint that streams `deltas`, recording what it was sent."""

    def __init__(self) -> None:
        self.url = ""
        self.deltas = ["Hel", "lo ", "there", "."]
        self.delay_s = 0.02
        self.first_delay_s = 0.0
        self.extra: list[bytes] = []
        self.status = 200
        self.error_body: dict[str, Any] = {}
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.chunks_sent = 0
        self.last_sent = asyncio.Event()
        self.disconnected = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.status >= 400:
            return web.json_response(self.error_body, status=self.status)
        await asyncio.sleep(self.first_delay_s)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk({"role": "assistant"}))
            for index, delta in enumerate(self.deltas):
                await asyncio.sleep(self.delay_s)
                if index == len(self.deltas) - 1:
                    self.last_sent.set()
                await response.write(_chunk({"content": delta}))
                self.chunks_sent += 1
            for raw in self.extra:
                await response.write(raw)
            await response.write(_chunk({}) + b": keep-alive comment\n\ndata: [DONE]\n\n")
        except ConnectionResetError:
            self.disconnected.set()
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        return response


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner, port = await serve(app, shutdown_timeout=0.5)
    fake.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def responder(server: FakeOpenAI) -> AsyncIterator[OpenAIResponder]:
    client = OpenAIResponder(OpenAIConfig(base_url=server.url, api_key_env=KEY_ENV))
    try:
        yield client
    finally:
        await client.close()


async def _turn(responder: Responder, utterance: str) -> list[str]:
    """One turn whose whole reply was heard."""
    deltas = await _collect(responder, utterance)
    responder.remember(utterance, "".join(deltas))
    return deltas


async def _collect(responder: Responder, utterance: str) -> list[str]:
    return [delta async for delta in responder.reply(utterance)]


async def test_deltas_arrive_in_order_and_incrementally(
    server: FakeOpenAI, responder: OpenAIResponder
) -> None:
    received: list[str] = []
    last_sent_at_first_delta: bool | None = None
    async for delta in responder.reply("hi"):
        if not received:
            last_sent_at_first_delta = server.last_sent.is_set()
        received.append(delta)
    assert received == ["Hel", "lo ", "there", "."]
    assert last_sent_at_first_delta is False
    assert responder.history == (), "the session, not the responder, decides what was heard"


async def test_request_carries_prompt_history_and_key(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    server.delay_s = 0
    server.deltas = ["ok"]
    config = OpenAIConfig(
        base_url=server.url + "/",
        model="tiny",
        api_key_env=KEY_ENV,
        system_prompt="Be brief.",
        history_turns=2,
        temperature=0.3,
    )
    responder = OpenAIResponder(config)
    try:
        for utterance in ("one", "two", "three", "four"):
            assert await _turn(responder, utterance) == ["ok"]
    finally:
        await responder.close()
    last = server.bodies[-1]
    assert last["model"] == "tiny"
    assert last["stream"] is True
    assert last["temperature"] == 0.3
    assert last["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "four"},
    ]
    assert server.bodies[0]["messages"][1:] == [{"role": "user", "content": "one"}]
    assert server.headers[-1]["Authorization"] == "Bearer sk-test-123"
    assert responder.history == (Turn("three", "ok"), Turn("four", "ok"))


async def test_no_key_env_means_no_authorization_and_no_temperature(
    server: FakeOpenAI, responder: OpenAIResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    await _collect(responder, "hi")
    assert "Authorization" not in server.headers[0]
    assert "temperature" not in server.bodies[0]


async def test_cancel_hangs_up(server: FakeOpenAI, responder: OpenAIResponder) -> None:
    server.deltas = [f"word{i} " for i in range(40)]
    server.delay_s = 0.03
    received: list[str] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for delta in responder.reply("tell me a story"):
            received.append(delta)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 <= len(received) < 5
    assert responder.history == ()
    await asyncio.wait_for(server.disconnected.wait(), 2)
    assert server.chunks_sent < len(server.deltas)


async def test_closing_the_generator_hangs_up(
    server: FakeOpenAI, responder: OpenAIResponder
) -> None:
    server.deltas = [f"w{i} " for i in range(40)]
    server.delay_s = 0.03
    async with aclosing(responder.reply("go")) as deltas:
        assert await anext(deltas) == "w0 "
    await asyncio.wait_for(server.disconnected.wait(), 2)
    assert server.chunks_sent < len(server.deltas)
    # The session remembers what the person heard; the next request carries exactly that.
    responder.remember("go", "w0 ")
    server.deltas, server.delay_s = ["ok"], 0
    await _collect(responder, "again")
    assert server.bodies[-1]["messages"][1:] == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "w0 "},
        {"role": "user", "content": "again"},
    ]


async def test_cancel_before_first_delta_sends_no_assistant_message(
    server: FakeOpenAI, responder: OpenAIResponder
) -> None:
    server.first_delay_s = 0.2
    task = asyncio.create_task(_collect(responder, "first"))
    while not server.bodies:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    responder.remember("first", "")
    assert responder.history == (Turn("first", ""),)
    server.first_delay_s, server.delay_s = 0, 0
    await _collect(responder, "second")
    assert server.bodies[-1]["messages"][1:] == [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ]


async def test_http_error_names_status_and_message(
    server: FakeOpenAI, responder: OpenAIResponder
) -> None:
    server.status = 500
    server.error_body = {"error": {"message": "The model is overloaded", "type": "server_error"}}
    with pytest.raises(ResponderHTTPError) as caught:
        await _collect(responder, "hi")
    assert caught.value.status == 500
    assert "500" in str(caught.value)
    assert "The model is overloaded" in str(caught.value)
    assert responder.history == ()


async def test_connection_refused_names_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    responder = OpenAIResponder(OpenAIConfig(base_url=url))
    try:
        with pytest.raises(ResponderUnavailable) as caught:
            await _collect(responder, "hi")
    finally:
        await responder.close()
    assert f"{url}/chat/completions" in str(caught.value)
    assert "Traceback" not in str(caught.value)


async def test_read_timeout_is_a_responder_error(server: FakeOpenAI) -> None:
    server.first_delay_s = 0.5
    responder = OpenAIResponder(OpenAIConfig(base_url=server.url, timeout_s=0.1))
    try:
        with pytest.raises(ResponderUnavailable, match="timed out"):
            await _collect(responder, "hi")
    finally:
        await responder.close()


async def test_malformed_data_line_raises_and_keeps_partial_text(
    server: FakeOpenAI, responder: OpenAIResponder
) -> None:
    server.deltas, server.delay_s = ["Hi"], 0
    server.extra = [b'data: {"choices": [oops\n\n']
    received: list[str] = []
    with pytest.raises(ResponderError, match="malformed"):
        async for delta in responder.reply("hi"):
            received.append(delta)
    assert received == ["Hi"]


async def test_error_event_mid_stream_raises(
    server: FakeOpenAI, responder: OpenAIResponder
) -> None:
    server.deltas, server.delay_s = [], 0
    server.extra = [b'data: {"error": {"message": "context too long"}}\n\n']
    with pytest.raises(ResponderError, match="context too long"):
        await _collect(responder, "hi")


async def test_echo_yields_the_utterance_once_and_keeps_history() -> None:
    echo = EchoResponder(history_turns=2)
    assert await _turn(echo, "hello there") == ["hello there"]
    assert await _turn(echo, "   ") == []
    assert await _turn(echo, "two") == ["two"]
    assert await _turn(echo, "three") == ["three"]
    assert echo.history == (Turn("two", "two"), Turn("three", "three"))
    echo.reset()
    assert echo.history == ()


async def test_history_holds_only_what_was_remembered() -> None:
    echo = EchoResponder()
    async with aclosing(echo.reply("hi")) as deltas:
        assert await anext(deltas) == "hi"
    assert echo.history == (), "a reply alone (e.g. a dropped speculation) leaves no trace"
    echo.remember("   ", "ignored")  # no words from the person: nothing to remember
    echo.remember("hi", "")  # said, but the person heard nothing of the reply
    assert echo.history == (Turn("hi", ""),)


def test_create_responder_and_config_validation() -> None:
    assert isinstance(create_responder(ResponderConfig()), EchoResponder)
    openai = create_responder(
        ResponderConfig.model_validate({"kind": "openai", "openai": {"model": "m"}})
    )
    assert isinstance(openai, OpenAIResponder)
    assert openai.name == "openai"
    assert openai.config.model == "m"
    with pytest.raises(ValidationError):
        ResponderConfig.model_validate({"kind": "openai", "openai": {"modle": "m"}})
    with pytest.raises(ValidationError):
        OpenAIConfig(history_turns=-1)
