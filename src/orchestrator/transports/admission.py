"""Which connections are let in at all: a per-address rate of new connections (a
token bucket per client address), the client's address when a proxy stands in front, and an
allow-list of client addresses."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Bucket:
    tokens: float
    at: float


class ConnectionRate:
    """At most `per_minute` new connections per address, in bursts of up to `per_minute`
    (a token bucket refilled at per_minute/60 per second); 0 turns it off."""

    # Beyond this many addresses, buckets that have refilled are forgotten: a full bucket is
    # what a new address gets anyway, so only memory is saved.
    PRUNE_ABOVE = 4096

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, address: str) -> float | None:
        """Take a token for `address`: None if admitted, else seconds until the next one."""
        if self.capacity <= 0:
            return None
        now = self.clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[address] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.refill_per_s)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.refill_per_s

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.refill_per_s
        self._buckets = {
            address: bucket
            for address, bucket in self._buckets.items()
            if now - bucket.at < full_after
        }

    def __len__(self) -> int:
        return len(self._buckets)


class ClientAddress:
    """The address a connection comes from: the peer, or, when the peer is a trusted proxy,
    the nearest address in X-Forwarded-For that is not itself a trusted proxy."""

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self.trusted: list[IPNetwork] = [
            ipaddress.ip_network(item, strict=False) for item in trusted_proxies
        ]

    def of(self, request: web.Request) -> str:
        """The client's address for `request` ("unknown" when the peer has none)."""
        peer = request.remote or "unknown"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        forwarded = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",")
        ]
        client = peer
        for hop in reversed(forwarded):
            if not _is_address(hop):
                break  # a malformed hop: nothing to its left can be trusted
            client = hop
            if not self._is_trusted(hop):
                break
        return client

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class AllowedAddresses:
    """Which client addresses may connect at all (the Wyoming endpoint's allow-list): IPs and
    networks; an empty list lets in every address that reaches the socket."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks: list[IPNetwork] = [
            ipaddress.ip_network(item, strict=False) for item in networks
        ]

    def allows(self, address: str) -> bool:
        """Whether `address` (an IP, as a socket's peer name gives it) may connect; one that is
        not an IP is refused unless the list is empty."""
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scoped IPv6: fe80::1%eth0
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack socket is 10.0.0.5
        return any(ip in network for network in self.networks)
