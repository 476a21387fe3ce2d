"""The performance report: runs the benchmarks one after another, writes docs/performance.md.

Steps (each a bench script of its own, run as a subprocess with this Python; its output goes to
`.bench/report/<step>.log`, its tables to `.bench/report/<step>.json`):
- `peers`: the voicefleet worker vs raw Piper vs wyoming-piper on texts of many shapes, and
  voicefleet's ASR vs raw faster-whisper vs wyoming-faster-whisper (bench/peers.py);
- `joins`: the first segment cut between words vs the first clause vs the whole sentence: first
  audio, silence at the joins, WER (bench/joins.py);
- `spin`: ONNX Runtime thread spinning on and off, idle and under load (bench/spin.py);
- `asr_load`: ASR settings under concurrency (bench/asr_load.py);
- `load`: N concurrent WebSocket sessions against one and two workers (bench/load.py).
Then it writes docs/performance.md (the machine, the commands, every table) and the plots in
docs/performance/ (matplotlib). Nothing runs in parallel: each step has the machine to itself.

    .venv/bin/python bench/report.py [--quick] [--steps peers,joins,spin,asr_load,load]
        [--from-results]   # only rewrite the document from the last results

`--quick` runs every step in its quick mode (under 5 minutes in all); the full mode is what the
README quotes. The last line is one JSON object: each step's key figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report_doc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "report"
DOC = ROOT / "docs" / "performance.md"
PLOTS = ROOT / "docs" / "performance"

STEPS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, quick arguments); --json PATH is added to both
    "peers": (["bench/peers.py", "--rounds", "9"], ["bench/peers.py", "--quick"]),
    "joins": (["bench/joins.py"], ["bench/joins.py", "--quick"]),
    "spin": (["bench/spin.py", "--rounds", "9"], ["bench/spin.py", "--rounds", "3"]),
    "asr_load": (
        ["bench/asr_load.py", "--sessions", "1,2,4,8,16", "--rounds", "2"],
        ["bench/asr_load.py", "--quick", "--settings", "1x2 batch 1,2x1 batch 4"],
    ),
    "load": (
        ["bench/load.py", "--sessions", "1,2,4,8,16,24,32", "--workers", "1,2", "--rounds", "2"],
        ["bench/load.py", "--quick"],
    ),
}


def run_step(name: str, quick: bool) -> dict[str, Any]:
    """Run one bench; its last line (JSON), the command, how long it took."""
    full, short = STEPS[name]
    argv = [*(short if quick else full), "--json", str(RESULTS / f"{name}.json")]
    log = RESULTS / f"{name}.log"
    print(f"[report] {name}: {' '.join(argv)}", flush=True)
    began = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, *argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    seconds = round(time.monotonic() - began, 1)
    lines = log.read_text().strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(lines[-15:])
        raise SystemExit(f"[report] {name} failed (exit {done.returncode}); {log}:\n{tail}")
    summary = json.loads(lines[-1])
    print(f"[report] {name}: {seconds} s", flush=True)
    here = machine()
    return {
        "command": f".venv/bin/python {' '.join(argv[:-2])}",
        "ran": f"commit {here['commit']}, {here['date']}",
        "seconds": seconds,
        "summary": summary,
    }


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kb = int(meminfo.read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": model or platform.processor(),
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "os": platform.platform(),
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every step's quick mode")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument(
        "--from-results", action="store_true", help="rewrite the document from the last results"
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    index = RESULTS / "index.json"
    steps: dict[str, Any] = json.loads(index.read_text()) if index.is_file() else {}
    if not args.from_results:
        if "machine" not in steps or set(args.steps.split(",")) >= set(STEPS):
            steps["machine"] = machine()  # a rerun of some steps keeps the full run's header
        steps["quick"] = args.quick
        for name in args.steps.split(","):
            steps[name] = run_step(name, args.quick)
            index.write_text(json.dumps(steps, indent=1))  # a later failure keeps these
    details = {
        name: json.loads((RESULTS / f"{name}.json").read_text())
        for name in STEPS
        if name in steps and (RESULTS / f"{name}.json").is_file()
    }
    PLOTS.mkdir(parents=True, exist_ok=True)
    DOC.write_text(report_doc.render(steps, details, PLOTS, DOC.parent))
    print(f"[report] wrote {DOC.relative_to(ROOT)} and {PLOTS.relative_to(ROOT)}/")
    print(json.dumps({name: steps[name]["summary"] for name in STEPS if name in steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
