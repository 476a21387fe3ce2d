"""One gRPC channel per worker address, shared by every session of a process."""

from __future__ import annotations

from voicefleet.rpc.channel import WorkerChannelConfig
from voicefleet.rpc.tts_client import TTSClient


class WorkerPool:
    """One gRPC channel per worker address, shared by every session of this orchestrator."""

    def __init__(self, config: WorkerChannelConfig | None = None) -> None:
        self.config = config or WorkerChannelConfig()
        self._clients: dict[str, TTSClient] = {}

    def client(self, address: str) -> TTSClient:
        """The (lazily created) client for an address: token, TLS and deadlines from config."""
        if address not in self._clients:
            self._clients[address] = TTSClient(address, config=self.config)
        return self._clients[address]

    async def close(self) -> None:
        """Close every channel."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
