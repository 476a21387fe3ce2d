"""How late the event loop runs its work.

Every session's microphone audio, reply frames and turn decisions wait their turn on the
orchestrator's one event loop: when the CPU is short (the ASR threads and the TTS workers
want the same cores) the loop runs late, and every person hears it late. A timer that should
fire every `interval_s` measures by how much it fires late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

INTERVAL_S = 0.1


class LoopLag:
    """Reports, every `interval_s`, how much later than asked the loop woke a sleeper."""

    def __init__(
        self,
        observe: Callable[[float], None],
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.interval_s = interval_s
        self._observe = observe
        self._clock = clock

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            began = self._clock()
            await asyncio.sleep(self.interval_s)
            self._observe(max(0.0, self._clock() - began - self.interval_s))
