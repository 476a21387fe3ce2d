"""Bad input gets a readable status code and the worker keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from tests.worker_process import WorkerProcess
from voicefleet.rpc.generated import tts_pb2
from voicefleet.rpc.tts_client import TTSClient


@pytest.fixture
async def client(piper_worker: WorkerProcess) -> AsyncIterator[TTSClient]:
    async with TTSClient(piper_worker.address) as tts:
        yield tts


async def status_of(coro: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro  # type: ignore[misc]
    return caught.value.code(), caught.value.details() or ""


async def stream_status(
    client: TTSClient, chunks: list[tts_pb2.TextChunk]
) -> tuple[grpc.StatusCode, str]:
    async def requests() -> AsyncIterator[tts_pb2.TextChunk]:
        for chunk in chunks:
            yield chunk

    call = client.stub.Synthesize(requests())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _frame in call:
            pass
    return caught.value.code(), caught.value.details() or ""


async def test_session_errors(client: TTSClient) -> None:
    code, message = await status_of(client.start_session("err-1", model_id="no-such-model"))
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-model" in message
    code, message = await status_of(client.start_session("bad id with spaces"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "session_id" in message
    code, _ = await status_of(client.start_session(""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = await status_of(client.start_session("err-2", options={"pitch": "2"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown option 'pitch'" in message
    code, message = await status_of(client.start_session("err-2", options={"speed": "0.1"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "option 'speed' out of range" in message
    code, message = await status_of(client.start_session("err-3", language="fr-FR"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "fr-FR" in message
    await client.start_session("err-4")
    code, _ = await status_of(client.start_session("err-4"))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, message = await status_of(client.control("nobody", tts_pb2.CONTROL_COMMAND_PAUSE))
    assert code == grpc.StatusCode.NOT_FOUND and "nobody" in message
    code, _ = await status_of(client.control("err-4", tts_pb2.CONTROL_COMMAND_UNSPECIFIED))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await status_of(client.end_session("nobody"))
    assert code == grpc.StatusCode.NOT_FOUND
    await client.end_session("err-4")


async def test_stream_errors_and_the_session_survives(client: TTSClient) -> None:
    sid = "err-stream"
    await client.start_session(sid)
    chunk = tts_pb2.TextChunk
    cases = [
        ([chunk(session_id=sid, text="", sequence=0)], "no text"),
        (
            [chunk(session_id=sid, text="x" * 2001, sequence=0, end_of_input=True)],
            "2001 characters",
        ),
        ([chunk(session_id=sid, text="Hi.", sequence=3, end_of_input=True)], "out of order"),
        ([chunk(session_id="other", text="Hi.", sequence=0)], "no session 'other'"),
        (
            [
                chunk(session_id=sid, text="Hi. ", sequence=0),
                chunk(session_id="x", text="Yo.", sequence=1),
            ],
            "is for session 'x'",
        ),
        ([chunk(session_id=sid, text="word " * 399, sequence=i) for i in range(3)], "exceeds 5000"),
    ]
    for chunks, expected in cases:
        code, message = await stream_status(client, chunks)
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), message
        assert expected in message
    frames = [f async for f in client.synthesize(sid, ["Still working."])]
    assert frames[-1].final
    await client.end_session(sid)


async def test_a_second_stream_on_a_busy_session_is_refused(client: TTSClient) -> None:
    sid = "err-busy"
    await client.start_session(sid)
    first = aiter(client.synthesize(sid, ["A long enough reply to still be playing, for sure."]))
    await anext(first)
    code, message = await stream_status(
        client, [tts_pb2.TextChunk(session_id=sid, text="Hi.", end_of_input=True)]
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already synthesizing" in message
    await client.control(sid, tts_pb2.CONTROL_COMMAND_STOP)
    await client.end_session(sid)


async def test_max_sessions_is_resource_exhausted(start_worker) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(
        models=[{"id": "mock", "adapter": "mock"}], default_model="mock", limits={"max_sessions": 2}
    )
    async with TTSClient(worker.address) as client:
        await client.start_session("m-1")
        await client.start_session("m-2")
        code, message = await status_of(client.start_session("m-3"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_sessions=2" in message
        await client.end_session("m-1")
        await client.start_session("m-3")


async def test_a_rejected_stream_that_is_still_sending_gets_its_status(client: TTSClient) -> None:
    """Found by tests/fuzz: the worker answered at once while the client was still writing, so
    a grpc.aio client reported INTERNAL ("Internal error from Core") instead of the status, and
    a fleet client would count a rejected request against the worker."""
    sid = "err-still-sending"
    await client.start_session(sid)
    chunk = tts_pb2.TextChunk
    for attempt in range(10):
        first = chunk(session_id=sid, text="Hi. ", sequence=5)  # out of order
        rest = [chunk(session_id=sid, text=f"word{i} ", sequence=i + 1) for i in range(300)]
        code, message = await stream_status(client, [first, *rest])
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (attempt, code, message)
        assert "out of order" in message
    await client.end_session(sid)
