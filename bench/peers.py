"""voicefleet beside its peers: one run, one machine, the same inputs (issue 10, part 5).

- TTS: the voicefleet worker over gRPC vs raw Piper in-process vs wyoming-piper, all on the
  bundled en_US-joe-medium voice; first audio p50/p95 and RTF per system, and voicefleet /
  wyoming-piper per text (bench/peer_tts.py says how each is measured).
- ASR: voicefleet's ASRService (default config) vs raw faster-whisper (transcribe() defaults) vs
  wyoming-faster-whisper (thread-matched, and with its own defaults), all on the bundled
  tiny.en; latency after the end of audio and WER on Piper and espeak-ng clips (bench/peer_asr.py).

The peers are bench-only: they run from their own venv (.bench/peers-venv, made on the first run
and again only when a pin changes), started as their users start them; voicefleet runs from the
project venv. Thread counts are matched and printed. Prints tables; the last line is one JSON
object with the key figures (--json PATH writes every figure, row and command).

    .venv/bin/python bench/peers.py [--rounds 5] [--quick] [--only tts|asr] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peer_asr, peer_tts
from bench.output import print_result
from bench.peer_servers import (
    PeerError,
    PeerServer,
    ensure_venv,
    expose_wyoming_client,
    physical_cores,
    requirements,
)
from tests.speech import Int16Samples
from tests.worker_process import WorkerProcess
from voicefleet.asr.config import ASRConfig
from voicefleet.rpc.tts_client import TTSClient

QUICK_ROUNDS = 2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, help=f"passes over the inputs (5; --quick: {QUICK_ROUNDS})"
    )
    parser.add_argument("--quick", action="store_true", help="fewer texts, clips and rounds")
    parser.add_argument("--only", choices=("tts", "asr"), help="run one side only")
    parser.add_argument("--json", type=Path, help="also write every figure and row here")
    parser.add_argument(
        "--piper-options", help='more worker Piper options, JSON (e.g. \'{"spinning": "off"}\')'
    )
    parser.add_argument("--texts", help="only these TTS texts, by name (comma-separated)")
    args = parser.parse_args()
    args.rounds = args.rounds or (QUICK_ROUNDS if args.quick else 5)
    return args


@dataclass
class Plan:
    """What one run measures, and the peers it starts."""

    tts_cases: list[peer_tts.TextCase] = field(default_factory=list)
    utterances: list[peer_asr.Utterance] = field(default_factory=list)
    piper_server: PeerServer | None = None
    piper_voice: str = ""
    whisper_servers: list[PeerServer] = field(default_factory=list)

    @property
    def servers(self) -> list[PeerServer]:
        return [*([self.piper_server] if self.piper_server else []), *self.whisper_servers]


def plan(args: argparse.Namespace, python: Path, tmp: Path) -> Plan:
    """The inputs and the peers' commands, for the sides asked for."""
    planned = Plan()
    if args.only in (None, "tts"):
        names = peer_tts.QUICK_CASES if args.quick else [c.name for c in peer_tts.CASES]
        if args.texts:
            names = args.texts.split(",")
            unknown = set(names) - {c.name for c in peer_tts.CASES}
            if unknown:
                raise SystemExit(f"unknown texts {sorted(unknown)}; see bench/peer_tts.py CASES")
        planned.tts_cases = [case for case in peer_tts.CASES if case.name in names]
        voice, argv = peer_tts.wyoming_piper_argv(python, tmp / "piper-data")
        planned.piper_voice = voice
        planned.piper_server = PeerServer("wyoming-piper", argv, tmp / "wyoming-piper.log")
    if args.only in (None, "asr"):
        utterances = peer_asr.UTTERANCES
        if args.quick:
            utterances = tuple(utterances[i] for i in peer_asr.QUICK_UTTERANCES)
        planned.utterances = list(utterances)
        matched = peer_asr.wyoming_whisper_argv(python, tmp / "fw-data", ASRConfig())
        defaults = peer_asr.wyoming_whisper_argv(python, tmp / "fw-default-data", None)
        planned.whisper_servers = [
            PeerServer("wyoming-faster-whisper", matched, tmp / "wyoming-fw.log"),
            PeerServer("wyoming-faster-whisper (defaults)", defaults, tmp / "wyoming-fw-d.log"),
        ]
    return planned


async def run_tts(
    args: argparse.Namespace, tmp: Path, server: PeerServer, cases: list[peer_tts.TextCase]
) -> dict[str, Any]:
    """The TTS comparison; its figures, rows and setup."""
    threads = physical_cores()  # onnxruntime's default, which wyoming-piper runs with
    options: dict[str, Any] = {"threads": threads}
    options |= json.loads(args.piper_options) if args.piper_options else {}
    worker = WorkerProcess(
        tmp,
        {
            "models": [{"id": "joe", "adapter": "piper", "options": options}],
            "default_model": "joe",
            "registry": {"redis_url": None},
        },
    )
    info = (await server.describe()).tts[0]
    try:
        worker.start()
        raw = peer_tts.RawPiper(threads)
        async with TTSClient(worker.address) as client:
            voicefleet = peer_tts.VoicefleetWorker(client)
            wyoming = peer_tts.WyomingPiper(server, info.supports_synthesize_streaming)
            systems = [voicefleet, raw, wyoming]
            replies = await peer_tts.measure(systems, cases, args.rounds)
            worker_rtf = await voicefleet.rtf()
    finally:
        worker.stop()
    figures, rows = peer_tts.summarize(replies, cases, worker_rtf)
    setup = {
        "wyoming_piper_version": info.version,
        "wyoming_piper_command": shlex.join(server.argv),
        "wyoming_piper_streaming": bool(info.supports_synthesize_streaming),
        "worker_piper_options": json.dumps(options),
        "threads": (
            f"onnxruntime intra-op threads {threads} for all three: raw Piper and the worker set "
            f"it (idle threads spin in a synthesis that starts while no other runs in the "
            f"process, and stop when it returns: Piper's `spinning: alone`); wyoming-piper has "
            f"no option for it and runs onnxruntime's default, one per physical core = "
            f"{threads} (spinning on, on after each run); its "
            f"process ran {server.threads()} threads in all"
        ),
        "token_stream": (
            f"{peer_tts.TOKEN_SIZES} characters per token in turn, {peer_tts.TOKEN_DELAY_S} s "
            "apart; worker: TextChunks as they come; wyoming-piper: "
            + ("SynthesizeChunk events" if info.supports_synthesize_streaming else "whole text")
            + "; raw Piper: whole text once complete (no text streaming)"
        ),
    }
    return {"figures": figures, "rows": rows, "setup": setup, "systems": [s.name for s in systems]}


async def run_asr(
    args: argparse.Namespace,
    servers: list[PeerServer],
    clips: list[tuple[peer_asr.Utterance, Int16Samples]],
) -> dict[str, Any]:
    """The ASR comparison; its figures, rows and setup."""
    config = ASRConfig()
    version = (await servers[0].describe()).asr[0].version
    voicefleet = await peer_asr.VoicefleetASR().start()
    try:
        systems = [
            voicefleet,
            peer_asr.RawWhisper(config),
            peer_asr.WyomingWhisper("wyoming_fw", servers[0]),
            peer_asr.WyomingWhisper("wyoming_fw_default", servers[1]),
        ]
        heard = await peer_asr.measure(systems, clips, args.rounds)
    finally:
        voicefleet.service.close()
    figures, rows = peer_asr.summarize(heard, clips)
    setup = {
        "wyoming_faster_whisper_version": version,
        "wyoming_fw_command": shlex.join(servers[0].argv),
        "wyoming_fw_default_command": shlex.join(servers[1].argv),
        "settings": (
            f"voicefleet: ASRConfig() = {config.cpu_threads} thread per call, {config.workers} "
            f"replicas, beam {config.beam_size}, {config.compute_type}, {config.chunk_length} s "
            f"window; raw_faster_whisper: {config.compute_type}, {config.cpu_threads} thread, "
            "transcribe() defaults (beam 5, temperature fallback, timestamps, 30 s window); "
            "wyoming_fw: the same threads, beam, compute type and language by its options; "
            "wyoming_fw_default: its defaults (--cpu-threads 4, beam 5 on x86, the model's own "
            "compute type (float16 -> float32 on CPU), language auto)"
        ),
    }
    return {"figures": figures, "rows": rows, "setup": setup, "systems": [s.name for s in systems]}


async def run(args: argparse.Namespace, python: Path) -> dict[str, Any]:
    """Start the peers, run each side asked for, stop the peers whatever happens."""
    with tempfile.TemporaryDirectory(prefix="peers-") as name:
        tmp = Path(name)
        planned = plan(args, python, tmp)
        sides: dict[str, Any] = {}
        try:
            # Every peer is forked here, before gRPC, onnxruntime or executors start threads.
            for server in planned.servers:
                server.launch()
            # Spoken while the peers load their models.
            clips = [(utterance, peer_asr.speak(utterance)) for utterance in planned.utterances]
            for server in planned.servers:
                await server.wait_ready()
            if planned.piper_server is not None:
                server = planned.piper_server
                sides["tts"] = await run_tts(args, tmp, server, planned.tts_cases)
            if planned.whisper_servers:
                sides["asr"] = await run_asr(args, planned.whisper_servers, clips)
        finally:
            for server in planned.servers:
                server.stop()
        if planned.piper_server is not None:
            peer_tts.check_nothing_downloaded(tmp / "piper-data", planned.piper_voice)
        return sides


def report(args: argparse.Namespace, sides: dict[str, Any]) -> None:
    """Setup, per-text and per-clip tables, then the key figures (the JSON line last)."""
    print(f"rounds: {args.rounds}{' (quick)' if args.quick else ''}; cores: {os.cpu_count()}")
    print(f"peers' venv pins: {' '.join(requirements())}")
    for side in sides.values():
        for key, value in side["setup"].items():
            print(f"{key}: {value}")
    if "tts" in sides:
        peer_tts.print_rows(sides["tts"]["rows"], sides["tts"]["systems"])
    if "asr" in sides:
        peer_asr.print_rows(sides["asr"]["rows"], sides["asr"]["systems"])
    figures: dict[str, float | int] = {"rounds": args.rounds}
    for side in sides.values():
        figures.update(side["figures"])
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, **sides}, indent=2) + "\n")
    print()
    print_result(figures)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every finally: the peers and the worker are stopped.
    raise SystemExit(128 + signum)


def main() -> int:
    """Make the peers' venv if needed, run the sides asked for, print the report."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        python = ensure_venv()
        expose_wyoming_client()
        sides = asyncio.run(run(args, python))
    except PeerError as error:
        print(f"bench/peers.py: {error}", file=sys.stderr)
        return 2
    report(args, sides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
