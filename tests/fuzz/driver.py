"""Runs fuzz cases from synchronous code (hypothesis tests, the bench): one event loop in a
thread, one HTTP session to the orchestrator and one gRPC channel to the worker, reused."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
import grpc

from tests.fuzz import grpc_cases, ws_cases
from tests.fuzz.grpc_cases import Call
from tests.fuzz.oracles import Outcome
from tests.fuzz.stack import FuzzStack
from tests.fuzz.ws_cases import Frame

T = TypeVar("T")


class Driver:
    """The client side of a fuzz run."""

    def __init__(self, stack: FuzzStack) -> None:
        assert stack.orchestrator is not None and stack.worker is not None
        self.stack = stack
        self.ws_url = stack.orchestrator.ws_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._cases = itertools.count()
        self.http: aiohttp.ClientSession = self.run(self._http())
        self.channel: grpc.aio.Channel = self.run(self._channel(stack.worker.address))

    @staticmethod
    async def _http() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    @staticmethod
    async def _channel(address: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(address)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run a coroutine on the driver's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def ws_case(self, frames: list[Frame], target: str) -> Outcome:
        """One WebSocket case."""
        limits = self.stack.ws_limits
        return self.run(ws_cases.run_ws_case(self.http, self.ws_url, frames, limits, target))

    def grpc_program(self, program: list[Call]) -> Outcome:
        """One worker program."""
        return self.run(grpc_cases.run_program(self.channel, program, next(self._cases)))

    def canaries(self) -> list[str]:
        """Problems of a fresh normal session on each tier (empty: both got audio)."""
        name = f"canary-{next(self._cases)}"
        found = [
            self.run(ws_cases.ws_canary(self.http, self.ws_url)),
            self.run(grpc_cases.grpc_canary(self.channel, name)),
        ]
        return [problem for problem in found if problem]

    def worker_settled(self, within_s: float = 5.0) -> str | None:
        """None once the worker holds no session, stream or queued segment."""
        return self.run(grpc_cases.settled(self.channel, within_s))

    def close(self) -> None:
        """Close the connections and stop the loop."""
        self.run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _close(self) -> None:
        await self.http.close()
        await self.channel.close()
