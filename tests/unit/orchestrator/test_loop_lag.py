import asyncio
import time

from voicefleet.orchestrator.loop_lag import LoopLag


async def test_a_blocked_event_loop_shows_as_lag() -> None:
    lags: list[float] = []
    monitor = asyncio.create_task(LoopLag(lags.append, interval_s=0.02).run())
    await asyncio.sleep(0.1)
    idle = list(lags)
    time.sleep(0.3)  # noqa: ASYNC251 (the point: a loop that runs nothing else meanwhile)
    await asyncio.sleep(0.05)
    monitor.cancel()
    assert idle and max(idle) < 0.1
    assert max(lags) >= 0.25
    assert all(lag >= 0 for lag in lags)


async def test_lag_is_measured_on_the_given_clock() -> None:
    now = [0.0]
    lags: list[float] = []

    def clock() -> float:
        now[0] += 0.07  # each reading 70 ms after the last: 70 ms late, no interval asked
        return now[0]

    monitor = asyncio.create_task(LoopLag(lags.append, interval_s=0.0, clock=clock).run())
    await asyncio.sleep(0.01)
    monitor.cancel()
    assert lags and all(abs(lag - 0.07) < 1e-9 for lag in lags)
