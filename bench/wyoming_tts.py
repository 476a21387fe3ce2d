"""Time to first audio through Wyoming, as Home Assistant asks for speech: voicefleet's Wyoming
endpoint (an orchestrator with transport.wyoming on, routing to a real Piper worker) vs
wyoming-piper (a subprocess from the peers' venv, bench/peer_servers.py, on a free port), both
on the bundled en_US-joe-medium voice, in one run, the systems interleaved and their order rotating.

One connection per text. A whole text is one `synthesize`; a streamed one (an LLM's tokens,
bench/peer_tts.py's pacing) is synthesize-start, synthesize-chunk per token, synthesize (the
whole text, for servers without streaming), synthesize-stop. First audio: from sending the
text (its first token) to the first audio-chunk event; last audio: to the last one (the reply
is always read to its end, so no synthesis spills into the next measurement).

    .venv/bin/python bench/wyoming.py [--rounds 5] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where this file would shadow the `wyoming`
# library: the repository root takes its place.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from bench.output import print_result
from bench.peer_servers import PeerServer, ensure_venv, physical_cores
from bench.peer_tts import (
    WARM_UP,
    TextCase,
    check_nothing_downloaded,
    deliver,
    wyoming_piper_argv,
)
from bench.stack import running_stack
from tests.integration.conftest import PIPER
from tests.worker_process import free_port

_LONG_FIRST = (
    "I looked through all of the options you mentioned earlier and the one that fits both your "
    "budget and your schedule best is the evening flight on Thursday. Shall I book it?"
)
_PARAGRAPH = (
    "Thanks for waiting. I found three flights that match what you asked for. The first one "
    "leaves at eight in the morning and arrives just after noon. The other two are in the "
    "evening, and they are a little cheaper."
)
CASES = (
    TextCase("one_word", "Hello."),
    TextCase("long_first_sentence", _LONG_FIRST),
    TextCase("numbers", "Your order number is 48213 and the total comes to $129.50 with tax."),
    TextCase("question", "Would you like me to book the table for seven or would eight be better?"),
    TextCase("paragraph", _PARAGRAPH),
    TextCase("stream_paragraph", _PARAGRAPH, streamed=True),
)
QUICK = ("one_word", "long_first_sentence", "question")
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Reply:
    """One measurement."""

    first_ms: float
    last_ms: float
    audio_s: float


class WyomingTTS:
    """A Wyoming TTS server, asked the way Home Assistant asks."""

    def __init__(self, name: str, port: int, voice: str) -> None:
        self.name = name
        self.port = port
        self.voice = voice

    async def info(self) -> Info:
        async with AsyncTcpClient("127.0.0.1", self.port) as client:
            await client.write_event(Describe().event())
            while (event := await client.read_event()) is not None:
                if Info.is_type(event.type):
                    return Info.from_event(event)
        raise RuntimeError(f"{self.name} gave no info")

    async def speak(self, case: TextCase) -> Reply:
        async with AsyncTcpClient("127.0.0.1", self.port) as client:
            began = time.perf_counter()
            sender = asyncio.create_task(self._send(client, case))
            try:
                return await asyncio.wait_for(self._receive(client, began, case), TIMEOUT_S)
            finally:
                sender.cancel()

    async def _send(self, client: AsyncTcpClient, case: TextCase) -> None:
        voice = SynthesizeVoice(self.voice)
        if not case.streamed:
            await client.write_event(Synthesize(case.text, voice=voice).event())
            return
        await client.write_event(SynthesizeStart(voice=voice).event())
        async for piece in deliver(case.text):
            await client.write_event(SynthesizeChunk(piece).event())
        await client.write_event(Synthesize(case.text, voice=voice).event())
        await client.write_event(SynthesizeStop().event())

    async def _receive(self, client: AsyncTcpClient, began: float, case: TextCase) -> Reply:
        first = last = 0.0
        audio_s = 0.0
        end = "synthesize-stopped" if case.streamed else "audio-stop"
        while (event := await client.read_event()) is not None:
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                last = time.perf_counter()
                first = first or last
                audio_s += chunk.seconds
            elif Error.is_type(event.type):
                raise RuntimeError(f"{self.name}: {Error.from_event(event).text}")
            elif event.type == end:
                return Reply((first - began) * 1000, (last - began) * 1000, audio_s)
        raise RuntimeError(f"{self.name} closed the connection mid-reply")


async def measure(
    systems: list[WyomingTTS], cases: list[TextCase], rounds: int
) -> dict[str, dict[str, list[Reply]]]:
    """Every system on every text, per round; the systems' order rotates from round to round."""
    for system in systems:  # first calls pay lazy set-up (wyoming-piper loads its voice)
        await system.speak(WARM_UP)
    replies: dict[str, dict[str, list[Reply]]] = {
        s.name: {c.name: [] for c in cases} for s in systems
    }
    for index in range(rounds):
        order = systems[index % len(systems) :] + systems[: index % len(systems)]
        for case in cases:
            for system in order:
                replies[system.name][case.name].append(await system.speak(case))
    return replies


def report(replies: dict[str, dict[str, list[Reply]]], cases: list[TextCase]) -> dict[str, Any]:
    """Print the per-text table; the figures."""
    vf, wp = "voicefleet", "wyoming_piper"
    print(f"\n{'text':<22}{'first audio p50 ms':>36}{'':>8}{'last audio p50 ms':>30}")
    print(f"{'':<22}{vf:>14}{wp:>14}{'vf/wp':>8}{vf:>14}{wp:>14}{'audio s':>9}")
    ratios = []
    for case in cases:
        first = {n: statistics.median(r.first_ms for r in replies[n][case.name]) for n in (vf, wp)}
        last = {n: statistics.median(r.last_ms for r in replies[n][case.name]) for n in (vf, wp)}
        audio = statistics.median(r.audio_s for r in replies[vf][case.name])
        ratios.append(first[vf] / first[wp])
        print(
            f"{case.name:<22}{first[vf]:>14.1f}{first[wp]:>14.1f}{ratios[-1]:>8.2f}"
            f"{last[vf]:>14.1f}{last[wp]:>14.1f}{audio:>9.2f}"
        )
    figures: dict[str, Any] = {}
    for name in (vf, wp):
        firsts = [r.first_ms for by_case in replies[name].values() for r in by_case]
        figures[f"first_audio_ms_p50_{name}"] = round(statistics.median(firsts), 1)
    figures["first_audio_ratio_median_text"] = round(statistics.median(ratios), 3)
    figures["first_audio_ratio_worst_text"] = round(max(ratios), 3)
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cases = [c for c in CASES if not args.quick or c.name in QUICK]
    threads = physical_cores()  # onnxruntime's default: what wyoming-piper runs with
    with tempfile.TemporaryDirectory(prefix="bench-wyoming-") as name, running_stack() as stacked:
        stack, tmp = stacked[0], Path(name)
        # wyoming-piper from the peers' own venv (bench/peer_servers.py), as bench/peers.py runs it.
        voice, argv = wyoming_piper_argv(ensure_venv(), tmp / "piper-data")
        peer = PeerServer("wyoming-piper", argv, tmp / "wyoming-piper.log")
        peer.launch()
        try:
            port = free_port()
            joe = {**PIPER, "voices": {"joe": ""}, "options": {"threads": threads}}
            stack.worker(models=[joe], default_model=joe["id"])
            wyoming = {"enabled": True, "uri": f"tcp://127.0.0.1:{port}"}
            stack.orchestrator(transport={"wyoming": wyoming})
            await peer.wait_ready()
            systems = [
                WyomingTTS("voicefleet", port, "joe"),
                WyomingTTS("wyoming_piper", peer.host_port[1], voice),
            ]
            versions = {s.name: (await s.info()).tts[0].version for s in systems}
            replies = await measure(systems, cases, args.rounds)
        finally:
            peer.stop()
        check_nothing_downloaded(tmp / "piper-data", voice)
    command = shlex.join(["python", *argv[1:]])
    print(
        f"\nvoicefleet {versions['voicefleet']} (Wyoming endpoint -> router -> Piper worker, "
        f"{threads} threads) vs wyoming-piper {versions['wyoming_piper']}: {command}"
    )
    figures = report(replies, cases)
    if args.json:
        rows = {
            name: {case: [r.__dict__ for r in rs] for case, rs in by_case.items()}
            for name, by_case in replies.items()
        }
        args.json.write_text(json.dumps({"figures": figures, "replies": rows}, indent=2))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="passes over the texts (5; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="three texts, two rounds")
    parser.add_argument("--json", type=Path, help="also write every reply here")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    print_result(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
