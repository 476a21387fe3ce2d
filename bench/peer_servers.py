"""The peers (wyoming-piper, wyoming-faster-whisper) as their users run them: a pinned venv of
their own under .bench/, and Wyoming servers started from it as subprocesses that always stop.

The peers are bench-only: they never enter the project's dependencies or its venv. Only the
`wyoming` client library (pure standard library) is borrowed from their venv, and only it.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".bench" / "peers-venv"
PEERS = ("wyoming-piper==2.5.2", "wyoming-faster-whisper==3.8.1", "wyoming==1.10.2")
# Pinned to the versions the voicefleet side runs, so both sides run the same inference
# engines and the comparison is of what is built around them.
ENGINES = ("piper-tts", "onnxruntime", "faster-whisper", "ctranslate2")
_STAMP = "voicefleet-requirements.txt"
# Settings a shell may carry that would change how the peers start (their env-var overrides).
_PEER_ENV_PREFIXES = ("WYO_WHISPER_", "WYOMING_PIPER_ARGS")
_PR_SET_PDEATHSIG = 1


class PeerError(RuntimeError):
    """A peer that could not be installed, did not start, or did not answer."""


def requirements() -> list[str]:
    """The peers' pins and the engine versions of the project venv."""
    engines = [f"{name}=={importlib.metadata.version(name)}" for name in ENGINES]
    return [*PEERS, *engines]


def ensure_venv(venv: Path = VENV) -> Path:
    """The peers' venv, made (or updated) only when the pinned requirements changed; its python."""
    wanted = "\n".join(requirements()) + "\n"
    python = venv / "bin" / "python"
    stamp = venv / _STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        _run_setup([sys.executable, "-m", "venv", str(venv)], "create the peers' venv")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print(f"installing the peers into {venv}: {' '.join(requirements())}", flush=True)
    _run_setup([*pip, *requirements()], "install the peers")
    stamp.write_text(wanted)
    return python


def _run_setup(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise PeerError(f"could not {what}: {shlex.join(argv)}\n{tail}")


def expose_wyoming_client(venv: Path = VENV) -> None:
    """Put the peers' `wyoming` package (and its metadata, which it reads for its version), and
    nothing else of their venv, on sys.path."""
    site = sorted(venv.glob("lib/python*/site-packages"))
    found = [*site[-1].glob("wyoming"), *site[-1].glob("wyoming-*.dist-info")] if site else []
    if len(found) != 2:
        raise PeerError(f"no wyoming package in {venv}: delete it and run again")
    shelf = venv / "client"
    shelf.mkdir(exist_ok=True)
    for target in found:
        link = shelf / target.name
        if not link.is_symlink() or link.resolve() != target.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    if str(shelf) not in sys.path:
        sys.path.append(str(shelf))


def physical_cores() -> int:
    """Physical cores (what onnxruntime uses by default), from /proc/cpuinfo."""
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                physical = value.strip()
            elif key.strip() == "core id":
                core = value.strip()
                cores.add((physical, core))
    return len(cores) or os.cpu_count() or 1


def _die_with_parent() -> None:
    # A bench killed outright (SIGKILL, OOM) runs no finally: the kernel still stops its peers.
    # (It fires when the thread that forked exits: servers are started from the main thread.)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PeerServer:
    """One Wyoming server subprocess: started, ready when it answers Describe, always stopped."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        uri = self.argv[self.argv.index("--uri") + 1]
        host, _, port = uri.removeprefix("tcp://").rpartition(":")
        return host, int(port)

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def failure(self, reason: str) -> PeerError:
        """An error naming the command and the end of its output."""
        return PeerError(
            f"{self.name} {reason}\ncommand: {shlex.join(self.argv)}\n"
            f"last output ({self.log_path}):\n{self.log_tail()}"
        )

    def launch(self) -> None:
        """Start the process (see wait_ready)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PEER_ENV_PREFIXES)}
        env["HF_HUB_OFFLINE"] = "1"  # belt and braces: nothing may be downloaded
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )

    async def wait_ready(self, within_s: float = 120.0) -> None:
        """Wait until it answers Describe with an Info; stop it and raise if it does not."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.failure(f"exited with code {self.proc.returncode} while starting")
            try:
                await asyncio.wait_for(self.describe(), 2.0)
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(0.2)
        self.stop()
        raise self.failure(f"did not answer Describe within {within_s:.0f} s")

    async def describe(self) -> Any:
        """The server's Info (a wyoming.info.Info)."""
        from wyoming.client import AsyncTcpClient
        from wyoming.info import Describe, Info

        async with AsyncTcpClient(*self.host_port) as client:
            await client.write_event(Describe().event())
            while (event := await client.read_event()) is not None:
                if Info.is_type(event.type):
                    return Info.from_event(event)
        raise OSError(f"{self.name} closed the connection without an Info")

    def threads(self) -> int:
        """Threads the server process runs now (all of them: Python's and the engine's)."""
        if self.proc is None:
            return 0
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
