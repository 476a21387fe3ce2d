"""A voice agent that acts, with real parts: a real orchestrator, a real Piper worker, real
tiny.en, a real WebSocket; an LLM stand-in (a local OpenAI-compatible SSE server) that records
the requests and streams scripted tool calls, and a local HTTP tool."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.conftest import (
    Microphone,
    Stack,
    open_session,
    transcribe_reply,
    wait_for_event,
)
from tests.local_http import serve
from tests.speech import piper_speech
from tests.tools import LOOKUP_ORDER
from tests.worker_process import free_port
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import normalize_words
from voicefleet.client.inputs import PacedAudio
from voicefleet.orchestrator.protocol import (
    AgentText,
    AudioCancel,
    AudioEnd,
    AudioStart,
    ErrorEvent,
    ServerMessage,
    TranscriptEvent,
)
from voicefleet.orchestrator.protocol_tools import (
    ToolCancelled,
    ToolRequest,
    ToolResult,
)

LLM_PORT = free_port()
TOOL_PORT = free_port()
OTHER_PORT = free_port()
ANSWER = "Your order is on its way and arrives on Friday."

Step = tuple[str, Any]  # ("text", str) | ("calls", [tool_call deltas]) | ("sleep", seconds)


def text(content: str) -> Step:
    return ("text", content)


def call(index: int, call_id: str, name: str, arguments: str = "") -> Step:
    function = {"name": name, "arguments": arguments}
    return ("calls", [{"index": index, "id": call_id, "type": "function", "function": function}])


def more(index: int, arguments: str) -> Step:
    return ("calls", [{"index": index, "function": {"arguments": arguments}}])


class FakeLLM:
    """Streams one scripted response per request (then "All right."), records the bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.scripts: list[list[Step]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner, _ = await serve(app, LLM_PORT)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        script = self.scripts.pop(0) if self.scripts else [text("All right.")]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for kind, value in script:
            if kind == "sleep":
                await asyncio.sleep(value)
                continue
            delta = {"content": value} if kind == "text" else {"tool_calls": value}
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.01)
        await response.write(b"data: [DONE]\n\n")
        return response

    def messages(self, request: int, role: str) -> list[dict[str, Any]]:
        return [m for m in self.bodies[request]["messages"] if m["role"] == role]


class ToolServer:
    """The operator's HTTP tools: /weather answers; /moved redirects to another host."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        async def weather(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            return web.json_response({"forecast": "sunny", "celsius": 21})

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{OTHER_PORT}/weather")

        app = web.Application()
        app.router.add_post("/weather", weather)
        app.router.add_post("/moved", moved)
        other = web.Application()
        other.router.add_post("/weather", weather)  # reached only if the redirect were followed
        for application, port in ((app, TOOL_PORT), (other, OTHER_PORT)):
            self._runners.append((await serve(application, port))[0])

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    fake = FakeLLM()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def tool_server() -> AsyncIterator[ToolServer]:
    server = ToolServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """One worker; an orchestrator on the fake LLM (with an HTTP tool); one on echo."""
    built = Stack(tmp_path_factory.mktemp("tools"), redis_url)
    tools = {
        "call_timeout_s": 1.5,
        "http": [
            {"name": "weather", "url": f"http://127.0.0.1:{TOOL_PORT}/weather"},
            {"name": "moved_weather", "url": f"http://127.0.0.1:{TOOL_PORT}/moved"},
        ],
    }
    try:
        built.worker()
        built.orchestrator(
            responder={
                "kind": "openai",
                "openai": {"base_url": f"http://127.0.0.1:{LLM_PORT}/v1", "model": "fake"},
                "tools": tools,
                "filler": {"after_s": 1.0, "phrases": ["One moment."]},
            }
        )
        built.orchestrator()  # echo, with the built-in get_time
        yield built
    finally:
        built.stop()


def of(events: list[ServerMessage], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def reply_text(events: list[ServerMessage], filler: bool = False) -> str:
    return "".join(e.text for e in of(events, AgentText) if e.filler == filler)


async def test_a_client_tool_round_trip_is_spoken(
    agent: Stack, llm: FakeLLM, recognizer: FasterWhisperRecognizer
) -> None:
    llm.scripts = [
        [
            call(0, "call_a", "lookup_order", '{"order'),
            more(0, '_id": "4'),
            more(0, '2"}'),
        ],
        [text("Your order is on its way "), text("and arrives on Friday.")],
    ]
    session, events = await open_session(agent.orchestrators[0].ws_url, tools=[LOOKUP_ORDER])
    session.mark_input_start()
    await session.send_text("Where is my order 42?")
    request = await wait_for_event(events, lambda e: isinstance(e, ToolRequest), 20)
    assert isinstance(request, ToolRequest)
    assert (request.tool_name, request.parameters) == ("lookup_order", {"order_id": "42"})
    await session.send_tool_response(request.request_id, {"status": "shipped", "eta": "Friday"})
    assert await session.wait_reply(30), session.failure
    await session.close()

    assert [t["function"]["name"] for t in llm.bodies[0]["tools"]] == [
        "get_time",
        "weather",
        "moved_weather",
        "lookup_order",
    ]
    [assistant] = llm.messages(1, "assistant")
    assert assistant["tool_calls"][0]["function"] == {
        "name": "lookup_order",
        "arguments": '{"order_id": "42"}',
    }
    [tool] = llm.messages(1, "tool")
    assert tool["tool_call_id"] == "call_a"
    assert json.loads(tool["content"]) == {"status": "shipped", "eta": "Friday"}
    [result] = of(events, ToolResult)
    assert (result.request_id, result.by, result.error) == (request.request_id, "client", "")
    assert reply_text(events) == ANSWER
    heard = normalize_words(transcribe_reply(recognizer, session.result.audio))
    assert {"order", "way", "friday"} <= set(heard), heard


async def test_parallel_calls_a_client_tool_and_the_orchestrators_own(
    agent: Stack, llm: FakeLLM
) -> None:
    llm.scripts = [
        [
            call(0, "call_a", "lookup_order", ""),
            call(1, "call_b", "get_time", '{"timezone"'),
            more(0, '{"order_id": "7"}'),
            more(1, ': "UTC"}'),
        ],
        [text("It has shipped, and it is noon.")],
    ]
    session, events = await open_session(agent.orchestrators[0].ws_url, tools=[LOOKUP_ORDER])
    session.mark_input_start()
    await session.send_text("Where is order 7, and what time is it?")
    request = await wait_for_event(events, lambda e: isinstance(e, ToolRequest), 20)
    assert isinstance(request, ToolRequest) and request.parameters == {"order_id": "7"}
    await session.send_tool_response(request.request_id, {"status": "shipped"})
    assert await session.wait_reply(30), session.failure
    await session.close()

    assert len(of(events, ToolRequest)) == 1, "get_time is answered by the orchestrator"
    results = {r.tool_name: r for r in of(events, ToolResult)}
    assert results["get_time"].by == "server" and "It is" in results["get_time"].result["text"]
    [assistant] = llm.messages(1, "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_a", "call_b"]
    contents = {m["tool_call_id"]: json.loads(m["content"]) for m in llm.messages(1, "tool")}
    assert contents["call_a"] == {"status": "shipped"}
    assert contents["call_b"]["timezone"] == "UTC"
    assert of(events, AudioEnd)


async def test_an_http_tool_is_called_and_a_redirect_elsewhere_is_refused(
    agent: Stack, llm: FakeLLM, tool_server: ToolServer
) -> None:
    llm.scripts = [
        [
            call(0, "w1", "weather", '{"city": "Paris"}'),
            call(1, "w2", "moved_weather", '{"city": "Oslo"}'),
        ],
        [text("It is sunny in Paris.")],
    ]
    session, events = await open_session(agent.orchestrators[0].ws_url)
    session.mark_input_start()
    await session.send_text("What is the weather like?")
    assert await session.wait_reply(30), session.failure
    await session.close()

    assert tool_server.bodies == [{"city": "Paris"}], "the redirect was not followed"
    contents = {m["tool_call_id"]: json.loads(m["content"]) for m in llm.messages(1, "tool")}
    assert contents["w1"] == {"forecast": "sunny", "celsius": 21}
    assert "another host" in contents["w2"]["error"]
    failed = [e for e in of(events, ErrorEvent) if e.code == "tool_failed"]
    assert len(failed) == 1 and "moved_weather" in failed[0].message
    assert reply_text(events) == "It is sunny in Paris."
    assert not of(events, ToolRequest)


async def test_a_tool_that_times_out_gets_an_error_result_and_the_agent_answers(
    agent: Stack, llm: FakeLLM
) -> None:
    llm.scripts = [
        [call(0, "slow", "lookup_order", '{"order_id": "9"}')],
        [text("Sorry, I cannot see that order right now.")],
    ]
    session, events = await open_session(agent.orchestrators[0].ws_url, tools=[LOOKUP_ORDER])
    session.mark_input_start()
    await session.send_text("Where is order 9?")
    request = await wait_for_event(events, lambda e: isinstance(e, ToolRequest), 20)
    assert isinstance(request, ToolRequest)
    assert await session.wait_reply(30), session.failure
    await session.send_tool_response(request.request_id, {"status": "late"})
    late = await wait_for_event(events, lambda e: isinstance(e, ToolCancelled), 5)
    await asyncio.sleep(0.3)
    await session.close()

    codes = [e.code for e in of(events, ErrorEvent)]
    assert codes == ["tool_timeout"], codes
    cancels = of(events, ToolCancelled)
    assert [(c.request_id, c.reason) for c in cancels] == [(request.request_id, "timeout")] * 2
    assert late is cancels[0]
    [result] = of(events, ToolResult)
    assert "no result within 1.5 s" in result.error
    [tool] = llm.messages(1, "tool")
    assert "no result within" in json.loads(tool["content"])["error"]
    assert len(llm.bodies) == 2, "the late response started nothing"
    assert reply_text(events) == "Sorry, I cannot see that order right now."


async def test_barge_in_while_a_tool_call_waits_cancels_the_turn(
    agent: Stack, llm: FakeLLM
) -> None:
    llm.scripts = [
        [
            text("Let me look that up for you. "),
            text("I am reading the order database very carefully, and it is a big one. "),
            call(0, "c1", "lookup_order", '{"order_id": "5"}'),
        ],
        [text("Sure, go ahead.")],
    ]
    speech = piper_speech("Stop, wait a moment, I have a question.")
    session, events = await open_session(agent.orchestrators[0].ws_url, tools=[LOOKUP_ORDER])
    mic = Microphone(session)
    mic.start()
    await session.send_text("Where is order 5?")
    request = await wait_for_event(events, lambda e: isinstance(e, ToolRequest), 20)
    await wait_for_event(events, lambda e: isinstance(e, AudioStart), 20)
    await asyncio.sleep(0.5)
    mic.play(speech)
    cancel = await wait_for_event(events, lambda e: isinstance(e, AudioCancel), 15)
    assert isinstance(cancel, AudioCancel) and cancel.reason == "barge_in"
    assert isinstance(request, ToolRequest)
    await session.send_tool_response(request.request_id, {"status": "too late"})
    await wait_for_event(events, lambda e: len(of(events, ToolCancelled)) >= 2, 5)
    await wait_for_event(events, lambda e: isinstance(e, TranscriptEvent) and e.turn == 2, 20)
    await wait_for_event(events, lambda e: len(llm.bodies) >= 2, 20)
    await mic.stop()
    await session.close()

    cancels = of(events, ToolCancelled)
    assert [(c.request_id, c.reason) for c in cancels] == [(request.request_id, "barge_in")] * 2
    assert not of(events, ToolResult), "the call was cancelled, not answered"
    history = llm.bodies[1]["messages"]
    assert not [m for m in history if m["role"] == "tool" or m.get("tool_calls")], history
    said = " ".join(m["content"] for m in history if m["role"] == "assistant")
    assert "database" not in said, said
    assert said.startswith("Let me look") or said == "", said


async def test_a_filler_is_spoken_while_the_first_token_is_late(
    agent: Stack, llm: FakeLLM, recognizer: FasterWhisperRecognizer
) -> None:
    llm.scripts = [[("sleep", 1.5), text("The museum opens at nine.")], [text("You are welcome.")]]
    session, events = await open_session(agent.orchestrators[0].ws_url)
    session.mark_input_start()
    await session.send_text("When does the museum open?")
    assert await session.wait_reply(30), session.failure
    fillers = [e for e in of(events, AgentText) if e.filler]
    first_words = next(e for e in of(events, AgentText) if e.text and not e.filler)
    assert [f.text for f in fillers] == ["One moment."]
    assert events.index(fillers[0]) < events.index(first_words)
    heard = normalize_words(transcribe_reply(recognizer, session.result.audio))
    assert "moment" in heard and "museum" in heard, heard
    assert heard.index("moment") < heard.index("museum")
    await session.send_text("Thanks.")
    await wait_for_event(events, lambda e: len(llm.bodies) >= 2, 20)
    await session.close()
    [assistant] = llm.messages(1, "assistant")
    assert assistant["content"].strip() == "The museum opens at nine.", assistant


async def test_the_echo_agent_answers_what_time_it_is_with_get_time(agent: Stack) -> None:
    session, events = await open_session(agent.orchestrators[1].ws_url)
    session.mark_input_start()
    await session.send_text("What time is it?")
    assert await session.wait_reply(30), session.failure
    await session.close()
    [result] = of(events, ToolResult)
    assert (result.tool_name, result.by, result.error) == ("get_time", "server", "")
    assert reply_text(events) == result.result["text"] and reply_text(events).startswith("It is")
    assert of(events, AudioEnd)


async def test_final_transcripts_carry_timed_words(agent: Stack) -> None:
    sentence = "Please book a table for four people tomorrow evening."
    clip = piper_speech(sentence)
    session, events = await open_session(agent.orchestrators[1].ws_url, transcript_words=True)
    session.mark_input_start()
    await PacedAudio(clip.tobytes(), 16_000, tail_silence=1.2).send(session)
    assert await session.wait_reply(30), session.failure
    await session.close()
    [final] = [e for e in of(events, TranscriptEvent) if e.final]
    assert final.words, final
    starts = [w.start for w in final.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end for w in final.words)
    # The utterance the recognizer got is the clip, a little pre-roll and the hangover at most.
    assert final.words[-1].end <= clip.size / 16_000 + 1.5
    assert all(0 <= w.confidence <= 1 for w in final.words)
    assert final.confidence is not None and 0 < final.confidence <= 1
    joined = normalize_words(" ".join(w.word for w in final.words))
    assert joined == normalize_words(final.text)
    partials = [e for e in of(events, TranscriptEvent) if not e.final]
    assert all(p.words is None for p in partials)


async def test_without_word_timings_finals_have_no_words(agent: Stack) -> None:
    clip = piper_speech("Turn on the kitchen lights please.")
    session, events = await open_session(agent.orchestrators[1].ws_url)
    session.mark_input_start()
    await PacedAudio(clip.tobytes(), 16_000, tail_silence=1.2).send(session)
    assert await session.wait_reply(30), session.failure
    await session.close()
    [final] = [e for e in of(events, TranscriptEvent) if e.final]
    assert final.words is None and final.confidence is None


def test_the_cli_client_answers_tool_requests_from_a_file(agent: Stack, tmp_path: Path) -> None:
    canned = {
        "lookup_order": {
            "description": "Where an order is.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            "result": {"status": "shipped", "eta": "Friday"},
        }
    }
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(canned))
    url = agent.orchestrators[1].ws_url
    argv = [sys.executable, "-m", "voicefleet", "client", "--url", url, "--tools", str(tools)]
    done = subprocess.run(
        [*argv, "--text", "Can you look up my order?", "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    asked = next(i for i, line in enumerate(lines) if line.startswith("[tool] lookup_order({})"))
    answered = next(i for i, line in enumerate(lines) if "lookup_order (client) ->" in line)
    assert asked < answered and '"eta": "Friday"' in lines[answered]
    assert "[agent] lookup order: status shipped, eta Friday." in lines
