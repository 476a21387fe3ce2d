"""Synthesis threads that render the most urgent segment first (earliest deadline first).

A worker serving many streams has more segments to render than threads. In arrival order, a
new reply's first segment waits behind every other stream's next sentence, although those
streams have seconds of audio queued at their listeners and the new one has none: under load
that wait is most of the time to first audio. Each segment therefore carries a deadline (when
its listener runs out of audio without it; a first segment, with no audio yet, is due within
`first_segment_slack_ms`, 1.5 s: stream.py) and a free thread takes the earliest. Nothing
waits while a thread is idle; the order only matters in a queue.

Plain `submit` (model loads, anything without a deadline) is due now, behind what is already
overdue.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(order=True)
class _Item:
    deadline: float
    sequence: int  # arrival order among equal deadlines
    future: Future[Any] = field(compare=False)
    call: Callable[[], Any] = field(compare=False)


class DeadlineExecutor(Executor):
    """A fixed pool of threads taking queued calls in deadline order."""

    def __init__(
        self,
        threads: int,
        name: str = "synth",
        clock: Callable[[], float] = time.monotonic,
        by_deadline: bool = True,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.clock = clock
        self._by_deadline = by_deadline  # False: arrival order (deadlines ignored)
        self._queue: list[_Item] = []
        self._sequence = itertools.count()
        self._ready = threading.Condition()
        self._shutdown = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        """Calls waiting for a thread (not those cancelled meanwhile: a stopped stream's)."""
        with self._ready:
            return sum(1 for item in self._queue if not item.future.cancelled())

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run `fn` when a thread is free, due now."""
        return self.submit_due(self.clock(), fn, *args, **kwargs)

    def submit_due(
        self, deadline: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Run `fn` before anything queued with a later `deadline` (the executor's clock)."""
        future: Future[T] = Future()
        with self._ready:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            due = deadline if self._by_deadline else 0.0
            item = _Item(due, next(self._sequence), future, lambda: fn(*args, **kwargs))
            heapq.heappush(self._queue, item)
            self._ready.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; queued ones still run unless `cancel_futures`."""
        with self._ready:
            self._shutdown = True
            if cancel_futures:
                for item in self._queue:
                    item.future.cancel()
                self._queue.clear()
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._shutdown:
                    self._ready.wait()
                if not self._queue:
                    return  # shut down and drained
                item = heapq.heappop(self._queue)
            if not item.future.set_running_or_notify_cancel():
                continue
            try:
                result = item.call()
            except BaseException as error:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)
