"""The processes a fuzz run attacks: one mock worker and one orchestrator, both with tokens and
small limits (so the generated input reaches them), plus liveness, RSS and log checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.worker_process import OrchestratorProcess, WorkerProcess

ORCHESTRATOR_TOKEN = "fuzz-orchestrator-token-3b9d"
WORKER_TOKEN = "fuzz-worker-token-" + "7" * 16
MODELS = ("mock", "mock-b")
VOICES = ("low", "high")


@dataclass(frozen=True)
class WsLimits:
    """The orchestrator's `http:` limits in a fuzz run (small, so strategies can cross them)."""

    max_message_bytes: int = 16_384
    message_cap_bytes: int = 262_144
    max_text_chars: int = 200
    max_session_text_chars: int = 600
    hello_timeout_s: float = 5.0
    max_sessions: int = 32

    def http(self) -> dict[str, Any]:
        """The orchestrator's `http:` section."""
        return {
            "auth_token": ORCHESTRATOR_TOKEN,
            "connections_per_ip_per_minute": 0,
            "max_message_bytes": self.max_message_bytes,
            "message_cap_bytes": self.message_cap_bytes,
            "max_text_chars": self.max_text_chars,
            "max_session_text_chars": self.max_session_text_chars,
            "hello_timeout_s": self.hello_timeout_s,
            "max_sessions": self.max_sessions,
        }


@dataclass(frozen=True)
class WorkerLimits:
    """The worker's `limits:` in a fuzz run."""

    max_sessions: int = 12
    max_chunk_chars: int = 300
    max_stream_chars: int = 1_200

    def limits(self) -> dict[str, Any]:
        """The worker's `limits:` section."""
        return {
            "max_sessions": self.max_sessions,
            "max_chunk_chars": self.max_chunk_chars,
            "max_stream_chars": self.max_stream_chars,
        }


def worker_config(redis_url: str | None, prefix: str, limits: WorkerLimits) -> dict[str, Any]:
    """A token-protected worker with two mock models (one default, one to load and unload)."""
    return {
        "models": [
            {"id": MODELS[0], "adapter": "mock", "languages": ["en-US"]},
            {"id": MODELS[1], "adapter": "mock", "languages": ["en-US", "de-DE"]},
        ],
        "default_model": MODELS[0],
        "auth": {"token": WORKER_TOKEN},
        "limits": limits.limits(),
        "registry": {
            "redis_url": redis_url,
            "key_prefix": prefix,
            "heartbeat_s": 0.3,
            "record_ttl_s": 1.5,
        },
    }


def orchestrator_config(redis_url: str, prefix: str, limits: WsLimits) -> dict[str, Any]:
    """An orchestrator with a token that dials the worker with its token."""
    return {
        "http": limits.http(),
        "router": {
            "redis_url": redis_url,
            "key_prefix": prefix,
            "refresh_s": 0.5,
            # A turn a fuzzed hello sends to a bad model must not bench the only worker.
            "failure_cooldown_s": 0.5,
            "worker": {"token": WORKER_TOKEN},
        },
        "pipeline": {"vad": {"hangover_ms": 600}},
    }


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (VmRSS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


@dataclass
class FuzzStack:
    """The worker and orchestrator under attack; `alive()` and `tracebacks()` are oracles."""

    tmp: Path
    redis_url: str
    ws_limits: WsLimits = field(default_factory=WsLimits)
    worker_limits: WorkerLimits = field(default_factory=WorkerLimits)
    worker: WorkerProcess | None = None
    orchestrator: OrchestratorProcess | None = None

    def start(self) -> FuzzStack:
        """Start the worker, then the orchestrator (ready once it sees the worker)."""
        prefix = f"fuzz-{id(self) % 100_000}"
        self.worker = WorkerProcess(
            self.tmp, worker_config(self.redis_url, prefix, self.worker_limits)
        ).start()
        self.orchestrator = OrchestratorProcess(
            self.tmp, orchestrator_config(self.redis_url, prefix, self.ws_limits)
        ).start()
        return self

    def stop(self) -> None:
        """Stop both (always safe to call)."""
        if self.orchestrator is not None:
            self.orchestrator.stop()
        if self.worker is not None:
            self.worker.stop()

    def processes(self) -> dict[str, WorkerProcess | OrchestratorProcess]:
        """The processes by role."""
        assert self.worker is not None and self.orchestrator is not None
        return {"worker": self.worker, "orchestrator": self.orchestrator}

    def dead(self) -> list[str]:
        """Roles whose process has exited (a crash: nothing here stops them mid-run)."""
        return [
            role
            for role, process in self.processes().items()
            if process.proc is None or process.proc.poll() is not None
        ]

    def rss(self) -> dict[str, int]:
        """RSS in KiB by role (0 for a dead process)."""
        out = {}
        for role, process in self.processes().items():
            alive = process.proc is not None and process.proc.poll() is None
            out[role] = rss_kib(process.proc.pid) if alive and process.proc else 0
        return out

    def tracebacks(self) -> dict[str, list[str]]:
        """Tracebacks each process logged: every one is an unhandled or INTERNAL error."""
        found: dict[str, list[str]] = {}
        for role, process in self.processes().items():
            text = process.log()
            starts = [m.start() for m in _TRACEBACK.finditer(text)]
            if starts:
                found[role] = [text[max(0, s - 300) : s + 1500] for s in starts]
        return found
