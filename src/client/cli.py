"""`voicefleet client`: talk to the orchestrator's WebSocket from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

from voicefleet.audio.format import OUTPUT_SAMPLE_RATE
from voicefleet.client.inputs import PacedAudio, TextInput
from voicefleet.client.mic import MicInput, MicUnavailable, open_microphone
from voicefleet.client.printer import EventPrinter
from voicefleet.client.session import ClientInput, ClientResult, run_session
from voicefleet.client.tools import CannedTools, ToolsFileError
from voicefleet.client.wav import WavFormatError, read_wav, write_wav
from voicefleet.orchestrator.protocol import ECHO_MODES, Hello

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
TOKEN_ENV = "VOICEFLEET_TOKEN"
# Declared in hello when no audio is sent at all (--text): any valid rate would do.
TEXT_ONLY_RATE = 16_000


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def add_client_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `client` subcommand; `args.run(args)` returns its exit code."""
    parser = commands.add_parser(
        "client",
        help="talk to an orchestrator over its WebSocket",
        description="Send a WAV file, a text or the microphone to an orchestrator; print "
        "transcripts, agent text and metrics; optionally record the reply. Exit codes: "
        "0 reply received, 1 connection/server failure or no reply, 2 bad input.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, metavar="FILE", help="16-bit PCM WAV, sent paced")
    source.add_argument("--text", help="send a text message instead of audio")
    source.add_argument("--mic", action="store_true", help="live microphone (extra: mic)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"WebSocket URL (default {DEFAULT_URL})")
    parser.add_argument("--say", action="store_true", help="with --text: speak it as is")
    parser.add_argument(
        "--tail-silence",
        type=_seconds,
        default=1.5,
        metavar="SECONDS",
        help="silence sent after --wav so the server's VAD ends the utterance (default 1.5)",
    )
    parser.add_argument("--out", type=Path, metavar="WAV", help="write the reply audio (48 kHz)")
    parser.add_argument("--language", default="en", help="language code (default en)")
    parser.add_argument("--voice", default="", help="voice to ask for")
    parser.add_argument("--model", default="", help="TTS model to ask for")
    parser.add_argument(
        "--token",
        default=None,
        help=f"the orchestrator's http.auth_token (default: ${TOKEN_ENV}; the variable keeps it "
        "out of the process list)",
    )
    parser.add_argument(
        "--echo-cancellation",
        choices=ECHO_MODES,
        default=None,
        help="who cancels the reply's echo in the microphone: auto (the server; the default "
        "with --mic), on, off (headphones; the default with --wav and --text, which no "
        "reply can reach), client (this device does)",
    )
    parser.add_argument(
        "--tools",
        type=Path,
        metavar="JSON",
        help="declare tools and answer their tool_requests with the canned results in this "
        'file: {"name": {"description", "parameters", "result" (or "error")}}',
    )
    parser.add_argument(
        "--words",
        action="store_true",
        help="ask for word timings in final transcripts (hello.transcript_words)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the reply once the input is sent (default 30)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only final transcripts, agent text, metrics, errors",
    )
    parser.set_defaults(run=run_client)


def run_client(args: argparse.Namespace) -> int:
    """Run the client to completion; not from inside a running event loop (use client_main)."""
    return asyncio.run(client_main(args))


async def client_main(args: argparse.Namespace) -> int:
    """The client as a coroutine: parsed arguments in, exit code out."""
    printer = EventPrinter(quiet=args.quiet)
    if args.say and args.text is None:
        printer.error("voicefleet client: --say needs --text")
        return 2
    try:
        tools = CannedTools.load(args.tools) if args.tools is not None else None
        source, rate = _open_input(args, printer)
    except (WavFormatError, MicUnavailable, ToolsFileError) as error:
        printer.error(f"voicefleet client: {error}")
        return 2
    hello = Hello(
        sample_rate=rate,
        language=args.language,
        voice=args.voice,
        model=args.model,
        token=args.token if args.token is not None else os.environ.get(TOKEN_ENV, ""),
        echo_cancellation=args.echo_cancellation or ("auto" if args.mic else "off"),
        tools=tools.declarations() if tools is not None else [],
        transcript_words=args.words,
    )
    restore = _stop_on_interrupt(source) if isinstance(source, MicInput) else _nothing
    try:
        result = await run_session(
            args.url,
            hello,
            [source],
            reply_within_s=args.timeout,
            wait_for_reply=not args.mic,
            on_event=printer.event,
            on_problem=printer.problem,
            answer_tool=tools.answer if tools is not None else None,
        )
    finally:
        restore()
    return _finish(args, result, printer)


def _open_input(args: argparse.Namespace, printer: EventPrinter) -> tuple[ClientInput, int]:
    if args.wav is not None:
        audio = read_wav(args.wav)
        paced = PacedAudio(audio.pcm, audio.sample_rate, tail_silence=args.tail_silence)
        return paced, audio.sample_rate
    if args.mic:
        mic = open_microphone()
        if not args.quiet:
            printer.line(f"[mic] listening at {mic.sample_rate} Hz; Ctrl-C hangs up")
        return mic, mic.sample_rate
    return TextInput(args.text, "say" if args.say else "answer"), TEXT_ONLY_RATE


def _finish(args: argparse.Namespace, result: ClientResult, printer: EventPrinter) -> int:
    if result.protocol_errors > 1:
        printer.problem(f"{result.protocol_errors} protocol errors in all")
    code = result.exit_code
    # A failed session that got no audio leaves no empty file behind.
    if args.out is not None and (result.frames or code == 0):
        try:
            write_wav(args.out, result.audio, OUTPUT_SAMPLE_RATE)
        except OSError as error:
            printer.error(f"voicefleet client: cannot write {args.out}: {error}")
            code = code or 1
        else:
            seconds = len(result.audio) / 2 / OUTPUT_SAMPLE_RATE
            if not args.quiet:
                printer.line(f"[out] wrote {args.out} ({seconds:.2f} s)")
    if result.error is not None:
        printer.error(f"voicefleet client: {result.error}")
    return code


def _nothing() -> None:
    return None


def _stop_on_interrupt(mic: MicInput) -> Callable[[], None]:
    """Ctrl-C ends the microphone input so the session still says bye and writes --out."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, mic.stop.set)
    except (NotImplementedError, RuntimeError, ValueError):
        # Windows, or not the main thread: Ctrl-C then ends the process the usual way.
        return _nothing

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)

    return restore
