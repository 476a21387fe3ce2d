"""Connection admission: the per-address token bucket (fake clock) and the client address behind
a trusted proxy (on a real aiohttp server)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voicefleet.orchestrator.transports.admission import ClientAddress, ConnectionRate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_per_minute_then_one_per_refill() -> None:
    clock = Clock()
    rate = ConnectionRate(6, clock)  # one token every 10 s
    assert [rate.admit("1.2.3.4") for _ in range(6)] == [None] * 6
    retry = rate.admit("1.2.3.4")
    assert retry == pytest.approx(10.0)
    assert rate.admit("5.6.7.8") is None, "each address has its own bucket"
    clock.now += 5
    assert rate.admit("1.2.3.4") == pytest.approx(5.0)
    clock.now += 5
    assert rate.admit("1.2.3.4") is None
    assert rate.admit("1.2.3.4") is not None
    clock.now += 3600
    assert [rate.admit("1.2.3.4") for _ in range(7)].count(None) == 6, "never above the burst"


def test_zero_turns_it_off_and_refilled_buckets_are_forgotten() -> None:
    assert all(ConnectionRate(0).admit("1.2.3.4") is None for _ in range(1000))
    clock = Clock()
    rate = ConnectionRate(60, clock)
    for n in range(ConnectionRate.PRUNE_ABOVE):
        rate.admit(f"10.0.{n // 256}.{n % 256}")
    clock.now += 61  # every bucket is full again
    rate.admit("192.0.2.1")
    assert len(rate) == 1


@pytest.mark.parametrize(
    ("trusted", "forwarded", "client"),
    [
        ([], "203.0.113.7", "127.0.0.1"),  # the peer is not trusted: its header is not either
        (["127.0.0.1"], None, "127.0.0.1"),
        (["127.0.0.1"], "203.0.113.7", "203.0.113.7"),
        (["127.0.0.0/8"], "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the nearest hop
        (["127.0.0.1", "10.0.0.0/8"], "203.0.113.7, 10.1.2.3", "203.0.113.7"),
        (["127.0.0.1"], "203.0.113.7, garbage", "127.0.0.1"),
    ],
)
async def test_client_address_behind_trusted_proxies(
    trusted: list[str], forwarded: str | None, client: str
) -> None:
    addresses = ClientAddress(trusted)

    async def whoami(request: web.Request) -> web.Response:
        return web.Response(text=addresses.of(request))

    app = web.Application()
    app.router.add_get("/", whoami)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with (
        TestClient(TestServer(app, host="127.0.0.1")) as http,
        http.get("/", headers=headers) as reply,
    ):
        assert await reply.text() == client
