"""Load: N WebSocket clients talking at once, in real time, to the whole stack; where it gives.

A real stack (valkey, one or two Piper workers, the orchestrator in echo mode: each reply speaks
the transcript back) serves N = 1, 2, 4, 8, 16, 24, 32 clients. Every client streams a
microphone in real time (silence, and spoken questions: bench/turn.py's utterances in the Piper
voice and espeak-ng) for a few rounds; in each round every client says one utterance and waits
for the whole reply. Ends of speech are either staggered (spread evenly over 2 s) or
simultaneous (every client's true end of speech in the same 20 ms tick: starts padded). One
worker runs Piper with 2 inference threads (configs/worker.yaml); two workers on these 2 cores
run 1 thread each, so the stack asks for no more threads than there are cores either way. The
orchestrator has its defaults (ASR included) but admits 2 x the largest N + 8 WebSocket
sessions, with no per-address rate limit (every client is 127.0.0.1); the workers keep theirs:
`limits.max_sessions` 64 each (the orchestrator holds one worker session per WebSocket session,
so one worker gives at most that many clients a voice: `--worker-max-sessions`).

Per (workers, mode, N), over every client's turns:
- TTFA on the client's clock: first reply frame - when the chunk holding the true end of speech
  was sent (as bench/turns.py); and the server's own `ttfa_ms` from the metrics event;
- from the metrics event: ASR queueing (`asr_queue_ms`), `asr_ms` (the end-of-speech decision
  -> the turn's transcript) and `first_frame_ms` (the reply's text ready -> its first frame,
  or the end of the end-of-turn wait if later);
- playback underruns (bench/playout.py): a reply plays out from its first frame's arrival +
  60 ms, frame i due 20 ms x i later; a frame arriving after its due time is an underrun frame,
  a reply with any is an underrun reply. audio_pause / resume / cancel (`interruptions`; the
  echo responder without barge-in should send none) restart or end the timeline;
- errors: error events, sessions that failed (to open, or closed under the client), turns with
  no reply (missing), replies never ended or short of frames (`problems`), early replies
  (before the end of speech: the turn was cut);
- the orchestrator's event-loop lag (its `voicefleet_event_loop_lag_seconds`, scraped before
  and after): the share of its 100 ms timers that fired over 50 ms late, and the bucket its
  95th percentile lies under. Every session's audio waits on that loop;
- CPU and peak RSS (bench/usage.py, psutil every 0.5 s): the machine (% of all cores), and per
  process (% of one core) the orchestrator, each worker, valkey and this bench client, with
  each one's main thread (its event loop);
- which limit is reached first, by rule (LIMITS: resources; SYMPTOMS: what the user notices),
  at the smallest N where it holds.
Prints two tables per (workers, mode); the last line is one JSON object of key figures. Each
(mode, N) takes 20-40 s (3 rounds); the whole default run about 15-20 minutes, `--quick` 2.

    .venv/bin/python bench/load.py [--sessions 1,2,4,8,16,24,32] [--workers 1,2]
        [--modes staggered,simultaneous] [--rounds 3] [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.crowd import Clip, Load, corpus, run_load
from bench.limits import LIMITS, SYMPTOMS, Limit, first_reached
from bench.stack import running_stack
from bench.usage import UsageSampler
from tests.integration.conftest import PIPER

SIZES = "1,2,4,8,16,24,32"
QUICK_MAX = 8
SYNTHESIS_THREADS = 2  # the worker's default (segments at once)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


LAG_METRIC = "voicefleet_event_loop_lag_seconds"


def lag_buckets(metrics_text: str) -> dict[float, float]:
    """The orchestrator's event-loop lag histogram: upper bound (s) -> cumulative count."""
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(f"{LAG_METRIC}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def lag_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Between two scrapes: how many 100 ms timers fired, the share that fired over 50 ms
    late, and the bucket bound the 95th percentile lies under (ms)."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    if not total:
        return {"loop_lag_timers": 0, "loop_lag_over_50ms": None, "loop_lag_ms_p95_under": None}
    p95 = next(bound for bound, count in delta.items() if count >= 0.95 * total)
    return {
        "loop_lag_timers": int(total),
        "loop_lag_over_50ms": round(1 - delta[0.05] / total, 3),
        "loop_lag_ms_p95_under": None if p95 == float("inf") else round(p95 * 1000),
    }


def summarize(load: Load, usage: dict[str, Any]) -> dict[str, Any]:
    """One row: latency percentiles over every turn, playback, errors, and the CPU usage."""
    turns = load.turns

    def values(key: str) -> list[float]:
        return [v for t in turns if (v := getattr(t, key)) is not None]

    replies = [t for t in turns if t.frames]
    missing = sum(t.missing for t in turns)
    problems = [p for t in turns for p in t.problems]
    row: dict[str, Any] = {"mode": load.mode, "sessions": load.sessions, "turns": len(turns)}
    for key in ("ttfa_ms", "server_ttfa_ms", "asr_queue_ms", "asr_ms", "first_frame_ms"):
        row[f"{key}_p50"], row[f"{key}_p95"] = pct(values(key), 50), pct(values(key), 95)
    row |= {
        "replies": len(replies),
        "reply_frames": sum(t.frames for t in replies),
        "underrun_frames": sum(t.late_frames for t in replies),
        "underrun_replies": sum(1 for t in replies if t.late_frames),
        "interruptions": sum(t.interruptions for t in turns),
        "extra_replies": sum(t.extra_replies for t in turns),
        "early_replies": sum(t.early for t in turns),
        "error_events": len(load.errors),
        "failed_sessions": len(load.failed),
        "missing_replies": missing,
        "problems": len(problems),
        "errors": len(load.errors) + len(load.failed) + missing + len(problems),
        "details": (load.failed + load.errors + problems)[:5],
        "bench_late_ms_max": round(load.late_max_s * 1000, 1),
        # The machine is shared: what processes other than the stack and this bench used.
        "others_cpu_pct": round(usage["machine"]["mean"] - usage["tracked"]["mean"], 1),
        "seconds": round(load.ended - load.began, 1),
        "usage": usage,
    }
    return row


def show(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


SHORT = {"orchestrator": "orch", "valkey": "valkey", "bench": "bench"}


def print_latency(title: str, rows: list[dict[str, Any]]) -> None:
    """Latency percentiles, playback and errors per N."""
    print(f"\n{title}: latency (ms; ttfa on the client's clock, server = its metrics) and playback")
    keys = ["ttfa_ms", "server_ttfa_ms", "asr_queue_ms", "asr_ms", "first_frame_ms"]
    names = ["ttfa", "server", "asr_queue", "asr", "first_frame"]
    head = "".join(f"{name + ' p50':>16}{'p95':>8}" for name in names)
    print(f"{'N':>3}{'turns':>6}{head}{'replies':>8}{'late rep':>9}{'late fr':>8}", end="")
    print(f"{'intr':>5}{'errors':>7}")
    for r in rows:
        cells = "".join(f"{show(r[k + '_p50']):>16}{show(r[k + '_p95']):>8}" for k in keys)
        print(f"{r['sessions']:>3}{r['turns']:>6}{cells}{r['replies']:>8}", end="")
        print(f"{r['underrun_replies']:>9}{r['underrun_frames']:>8}", end="")
        print(f"{r['interruptions']:>5}{r['errors']:>7}")
    for r in rows:
        if r["details"]:
            print(f"  N={r['sessions']}: " + "; ".join(r["details"]))


def print_usage(title: str, rows: list[dict[str, Any]]) -> None:
    """CPU and peak RSS per N: the machine, and each process with its event loop."""
    print(
        f"\n{title}: CPU (machine: % of all cores, mean, p95, share of samples pinned; others: "
        "the machine's mean less these processes'; a process: % of one core, mean, p95, its main "
        "thread's p95) and peak RSS (MB); late: the clients' worst tick delay (ms)"
    )
    usage = rows[0]["usage"]
    names = [n for n in usage if n not in ("cores", "samples", "machine", "tracked")]
    short = [SHORT.get(n, n.replace("worker", "w")) for n in names]
    print(f"{'N':>3}{'machine':>8}{'p95':>5}{'pinned':>7}{'others':>7}", end="")
    print("".join(f"{s:>7}{'p95':>5}{'loop':>5}{'MB':>6}" for s in short) + f"{'late':>6}")
    for r in rows:
        u = r["usage"]
        m = u["machine"]
        print(
            f"{r['sessions']:>3}{m['mean']:>8.0f}{m['p95']:>5.0f}{m['pinned_share']:>7.2f}", end=""
        )
        print(f"{r['others_cpu_pct']:>7.0f}", end="")
        for n in names:
            cpu, loop = u[n]["cpu"], u[n]["loop"]
            print(f"{cpu['mean']:>7.0f}{cpu['p95']:>5.0f}{loop['p95']:>5.0f}", end="")
            print(f"{u[n]['rss_peak_mb']:>6.0f}", end="")
        print(f"{r['bench_late_ms_max']:>6.0f}")


def print_tables(workers: int, mode: str, rows: list[dict[str, Any]]) -> None:
    """Both tables, then the limits reached first."""
    title = f"{workers} worker(s), {mode}"
    print_latency(title, rows)
    print_usage(title, rows)
    lags = [
        f"N={r['sessions']}: {show(r['loop_lag_over_50ms'])} over 50 ms, "
        f"p95 under {show(r['loop_lag_ms_p95_under'])} ms"
        for r in rows
    ]
    print(f"orchestrator event loop, 100 ms timer fired late: {'; '.join(lags)}")
    busy = [
        f"N={r['sessions']} {r['others_cpu_pct']:.0f} %" for r in rows if r["others_cpu_pct"] > 10
    ]
    if busy:
        print(f"warning: other processes used the machine ({', '.join(busy)} of all cores):")
        print("  the limits below are this shared machine's, not the stack's alone")
    print(f"first exhausted: {describe(first_reached(rows, LIMITS), LIMITS)}")
    print(f"first degraded: {describe(first_reached(rows, SYMPTOMS), SYMPTOMS)}", flush=True)


def describe(reached: dict[str, Any] | None, limits: tuple[Limit, ...]) -> str:
    """`first_reached`'s answer with each rule spelled out."""
    rules = {limit.name: limit.rule for limit in limits}
    if reached is None:
        return "none at these N (" + "; ".join(f"{n}: {r}" for n, r in rules.items()) + ")"
    found = "; ".join(f"{n} = {v:g} ({rules[n]})" for n, v in reached["values"].items())
    return f"N={reached['sessions']}: {found}"


def run_workers(count: int, args: argparse.Namespace, clips: list[Clip]) -> list[dict[str, Any]]:
    """A fresh stack with `count` workers; every (mode, N) against it; rows in run order."""
    threads = 2 if count == 1 else 1  # as many inference threads as cores, either way
    threads = args.piper_threads or threads
    options: dict[str, Any] = {"threads": threads}
    options |= json.loads(args.piper_options) if args.piper_options else {}
    extra: dict[str, Any] = json.loads(args.worker) if args.worker else {}
    if args.worker_max_sessions:
        extra["limits"] = {"max_sessions": args.worker_max_sessions}
    rows = []
    with running_stack() as (stack, valkey_pid):
        pids: dict[str, int] = {}
        ceilings = {}
        cores = os.cpu_count() or 1
        for index in range(count):
            worker = stack.worker(models=[{**PIPER, "options": options}], **extra)
            assert worker.proc is not None
            pids[f"worker{index}"] = worker.proc.pid
            ceilings[f"worker{index}"] = 100.0 * min(cores, threads * SYNTHESIS_THREADS)
        # Sessions are counted from upgrade and closed ones linger for a moment: room for that;
        # and no per-address rate limit (every client comes from 127.0.0.1).
        http = {"max_sessions": 2 * max(args.sizes) + 8, "connections_per_ip_per_minute": 0}
        pipeline = json.loads(args.pipeline) if args.pipeline else {}
        orchestrator = stack.orchestrator(http=http, pipeline=pipeline)
        assert orchestrator.proc is not None
        pids = {"orchestrator": orchestrator.proc.pid, **pids}
        pids |= {"valkey": valkey_pid, "bench": os.getpid()}
        url = orchestrator.ws_url
        with UsageSampler(pids, ceilings) as usage:
            asyncio.run(run_load(url, clips, count, "simultaneous", rounds=1))  # warm-up
            for mode in args.modes:
                for sessions in args.sizes:
                    time.sleep(1.0)
                    lag_before = lag_buckets(orchestrator.get("/metrics")[1])
                    load = asyncio.run(run_load(url, clips, sessions, mode, args.rounds))
                    row = summarize(load, usage.summary(load.began, load.ended))
                    row |= lag_summary(lag_before, lag_buckets(orchestrator.get("/metrics")[1]))
                    rows.append(
                        {"workers": count, "piper_threads": threads, "piper": options, **row}
                    )
                    print(
                        f"workers {count} {mode} N={sessions}: {row['turns']} turns, "
                        f"{row['seconds']} s",
                        flush=True,
                    )
                print_tables(count, mode, [r for r in rows if r["mode"] == mode])
    return rows


def key_figures(rows: list[dict[str, Any]], quick: bool, rounds: int) -> dict[str, Any]:
    """The last line: per worker count and mode, the figures a reader compares."""
    out: dict[str, Any] = {"quick": quick, "rounds": rounds}
    for workers in sorted({r["workers"] for r in rows}):
        per_mode = {}
        for mode in dict.fromkeys(r["mode"] for r in rows):
            mine = [r for r in rows if r["workers"] == workers and r["mode"] == mode]
            at = {r["sessions"]: r for r in mine}
            largest = max(at)
            figures: dict[str, Any] = {
                "ttfa_ms_p50_at_1": at[1]["ttfa_ms_p50"] if 1 in at else None,
                "largest": largest,
                "ttfa_ms_p95_at_largest": at[largest]["ttfa_ms_p95"],
            }
            for n in (16, 32):
                figures[f"ttfa_ms_p95_at_{n}"] = at[n]["ttfa_ms_p95"] if n in at else None
                figures[f"underrun_replies_at_{n}"] = at[n]["underrun_replies"] if n in at else None
                figures[f"errors_at_{n}"] = at[n]["errors"] if n in at else None
                figures[f"loop_lag_over_50ms_at_{n}"] = (
                    at[n]["loop_lag_over_50ms"] if n in at else None
                )
            figures["others_cpu_pct_max"] = max(r["others_cpu_pct"] for r in mine)
            figures["first_exhausted"] = first_reached(mine, LIMITS)
            figures["first_degraded"] = first_reached(mine, SYMPTOMS)
            per_mode[mode] = figures
        out[f"workers_{workers}"] = per_mode
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default=SIZES, help="client counts, comma-separated")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--modes", default="staggered,simultaneous")
    parser.add_argument("--rounds", type=int, default=3, help="turns per client")
    parser.add_argument(
        "--quick", action="store_true", help="N up to 8, one worker, the first mode only"
    )
    parser.add_argument("--worker-max-sessions", type=int, help="worker limits.max_sessions")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument(
        "--piper-threads",
        type=int,
        help="onnxruntime threads per synthesis (default: cores/workers)",
    )
    parser.add_argument(
        "--piper-options",
        help='more Piper model options, JSON (e.g. \'{"spinning": "off"}\')',
    )
    parser.add_argument(
        "--worker", help='worker settings, JSON (e.g. \'{"synthesis_order": "arrival"}\')'
    )
    parser.add_argument(
        "--pipeline", help="orchestrator pipeline, JSON (e.g. '{\"partial_interval_s\": 0}')"
    )
    args = parser.parse_args()
    args.sizes = [int(n) for n in args.sessions.split(",")]
    args.modes = args.modes.split(",")
    counts = [int(n) for n in args.workers.split(",")]
    if args.quick:
        args.sizes = [n for n in args.sizes if n <= QUICK_MAX]
        args.modes, counts = args.modes[:1], counts[:1]
    clips = corpus()
    rows = []
    for count in counts:
        rows += run_workers(count, args, clips)
        if args.json:  # after each stack: a long run that fails later keeps what it measured
            args.json.write_text(json.dumps(rows, indent=1))
    print(json.dumps(key_figures(rows, args.quick, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
