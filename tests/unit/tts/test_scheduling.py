"""The synthesis threads' order: earliest deadline first, arrival order among equals."""

from __future__ import annotations

import threading

import pytest

from voicefleet.tts.scheduling import DeadlineExecutor


def blocked(executor: DeadlineExecutor) -> threading.Event:
    """Occupy the executor's only thread until the returned event is set."""
    release, running = threading.Event(), threading.Event()

    def hold() -> None:
        running.set()
        release.wait(5)

    executor.submit(hold)
    assert running.wait(5)
    return release


def test_queued_calls_run_in_deadline_order_then_arrival_order() -> None:
    executor = DeadlineExecutor(1, clock=lambda: 100.0)
    release = blocked(executor)
    ran: list[str] = []
    futures = [
        executor.submit_due(103.0, ran.append, "later segment"),
        executor.submit_due(101.0, ran.append, "first of two due at 101"),
        executor.submit(ran.append, "due now"),  # the clock says 100
        executor.submit_due(101.0, ran.append, "second of two due at 101"),
        executor.submit_due(99.0, ran.append, "overdue"),
    ]
    assert executor.queued == 5
    release.set()
    for future in futures:
        future.result(5)
    assert ran == [
        "overdue",
        "due now",
        "first of two due at 101",
        "second of two due at 101",
        "later segment",
    ]
    executor.shutdown()


def test_an_idle_thread_runs_a_late_deadline_at_once() -> None:
    executor = DeadlineExecutor(2)
    assert executor.submit_due(executor.clock() + 3600, lambda: 7).result(2) == 7
    executor.shutdown()


def test_exceptions_reach_the_caller_and_the_thread_goes_on() -> None:
    executor = DeadlineExecutor(1)

    def fail() -> None:
        raise ValueError("bad segment")

    with pytest.raises(ValueError, match="bad segment"):
        executor.submit(fail).result(2)
    assert executor.submit(lambda: "still serving").result(2) == "still serving"
    executor.shutdown()


def test_shutdown_can_cancel_what_is_queued_and_refuses_new_calls() -> None:
    executor = DeadlineExecutor(1)
    release = blocked(executor)
    queued = executor.submit(lambda: None)
    executor.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(lambda: None)
    executor.shutdown(wait=True)  # the running call finishes; the threads end


def test_shutdown_without_cancelling_runs_what_is_queued() -> None:
    executor = DeadlineExecutor(1)
    release = blocked(executor)
    queued = executor.submit(lambda: "ran")
    release.set()
    executor.shutdown(wait=True)
    assert queued.result(0) == "ran"


def test_arrival_order_ignores_deadlines() -> None:
    executor = DeadlineExecutor(1, clock=lambda: 100.0, by_deadline=False)
    release = blocked(executor)
    ran: list[str] = []
    futures = [
        executor.submit_due(103.0, ran.append, "first in"),
        executor.submit_due(99.0, ran.append, "second in"),
    ]
    release.set()
    for future in futures:
        future.result(5)
    assert ran == ["first in", "second in"]
    executor.shutdown()


def test_a_cancelled_call_no_longer_counts_as_queued() -> None:
    """A stopped stream's segment leaves the count at once, not when a thread gets to it."""
    executor = DeadlineExecutor(1, clock=lambda: 100.0)
    release = blocked(executor)
    stopped = executor.submit_due(101.0, lambda: "stopped")
    waiting = executor.submit_due(102.0, lambda: "waiting")
    assert executor.queued == 2
    assert stopped.cancel()
    assert executor.queued == 1
    release.set()
    assert waiting.result(5) == "waiting"
    assert executor.queued == 0
