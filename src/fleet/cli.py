"""`voicefleet fleet`: the operator's command line (status, drain, load, unload, say).

Registry settings are the orchestrator's: `--config` (its YAML: `router.redis_url`,
`router.key_prefix`, `router.redis`, `router.worker`), its environment overrides and
`REDIS_URL`, then `--redis-url` / `--prefix`. The worker token is `--token`, else
`VOICEFLEET_WORKER_TOKEN`, else the config's `router.worker` token. Every failure is one line
on stderr and a non-zero exit: 1 when the fleet said no (`status`: no usable worker), 2 when
the settings are unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.exceptions import RedisError

from voicefleet.fleet.admin import FleetAdmin, OperatorError
from voicefleet.fleet.config import RouterConfig
from voicefleet.fleet.say import say
from voicefleet.fleet.status import render_status, status_json
from voicefleet.rpc.channel import ChannelConfigError, WorkerChannelConfig
from voicefleet.rpc.redis_conn import RedisConfigError
from voicefleet.settings import ConfigError

TOKEN_ENV = "VOICEFLEET_WORKER_TOKEN"
CLEAR = "\x1b[H\x1b[2J"
Command = Callable[[argparse.Namespace, FleetAdmin], Awaitable[int]]


def _settings(args: argparse.Namespace) -> tuple[RouterConfig, WorkerChannelConfig]:
    from voicefleet.orchestrator.config import load_orchestrator_config

    router: dict[str, str] = {}
    if args.redis_url:
        router["redis_url"] = args.redis_url
    if args.prefix:
        router["key_prefix"] = args.prefix
    config = load_orchestrator_config(args.config, {"router": router} if router else None).router
    token = args.token or os.environ.get(TOKEN_ENV, "").strip()
    channel = config.worker
    if token:
        channel = channel.model_copy(update={"token": token, "token_file": None})
    return config, channel


def _fail(args: argparse.Namespace, message: str) -> None:
    print(f"voicefleet fleet {args.action}: {message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """Run one `fleet` action; errors become one line on stderr."""
    # The fleet client's own warnings (a worker failed over, the registry unreachable) would
    # repeat the one error line; -v shows them and the rest of its log.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config, channel = _settings(args)
    except (ConfigError, ValueError) as error:
        _fail(args, str(error))
        return 2
    command: Command = args.command_run

    async def main() -> int:
        admin = FleetAdmin(config, channel)
        try:
            return await command(args, admin)
        finally:
            await admin.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0 if args.action == "status" else 130
    except OperatorError as error:
        _fail(args, str(error))
        return 1
    except (ChannelConfigError, RedisConfigError) as error:
        _fail(args, str(error))
        return 2
    except (RedisError, OSError) as error:
        _fail(args, f"{type(error).__name__}: {error}")
        return 1


async def _status(args: argparse.Namespace, admin: FleetAdmin) -> int:
    if args.watch is None:
        snapshot = await admin.snapshot()
        now = time.time()
        if args.json:
            print(json.dumps(status_json(snapshot, now)))
        elif snapshot.records or snapshot.skipped:
            print(render_status(snapshot, now))
        if not snapshot.records:  # what scripts and probes check: nothing can speak
            _fail(args, f"no workers registered in {snapshot.registry} (prefix {snapshot.prefix})")
            return 1
        return 0
    while True:  # until Ctrl-C; an unreachable registry is shown, not fatal
        now = time.time()
        try:
            snapshot = await admin.snapshot()
            body = json.dumps(status_json(snapshot, now)) if args.json else ""
            text = render_status(snapshot, now)
        except OperatorError as error:
            body, text = json.dumps({"at": now, "error": str(error)}), str(error)
        if args.json:
            print(body, flush=True)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(now))
            header = f"voicefleet fleet status, every {args.watch:g} s, {stamp} (Ctrl-C exits)"
            print(f"{CLEAR}{header}\n\n{text}", flush=True)
        await asyncio.sleep(args.watch)


async def _drain(args: argparse.Namespace, admin: FleetAdmin) -> int:
    record = await admin.drain(args.name, 0.0 if args.no_wait else args.wait)
    if args.no_wait:
        print(
            f"drain requested for {record.name} ({record.address}): it drains at its next heartbeat"
        )
    else:
        print(
            f"{record.name} ({record.address}) is draining: it left the registry and takes no "
            "new sessions; running streams finish (up to its drain_s), then it exits"
        )
    return 0


async def _models(args: argparse.Namespace, admin: FleetAdmin) -> int:
    workers = await admin.targets(args.model, [] if args.all else args.on)
    results = await admin.change_models(args.model, workers, load=args.action == "load")
    for result in results:
        if result.ok:
            print(f"{result.worker}: {result.message}")
        else:
            _fail(args, f"{result.worker}: {result.message}")
    failed = [result for result in results if not result.ok]
    if failed and len(results) > 1:
        _fail(args, f"{len(failed)} of {len(results)} worker(s) failed")
    return 1 if failed else 0


async def _say(args: argparse.Namespace, admin: FleetAdmin) -> int:
    result = await say(
        admin.config, admin.channel, args.text, args.out, voice=args.voice, rate=args.rate
    )
    print(
        f"wrote {result.path}: {result.audio_s:.2f} s at {result.rate} Hz, spoken by "
        f"{' then '.join(dict.fromkeys(result.workers)) or 'unknown'}; first audio after "
        f"{result.first_audio_ms:.0f} ms (all of it after {result.total_ms:.0f} ms)"
    )
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _rate(text: str) -> int:
    value = int(text)
    if not 8_000 <= value <= 192_000:
        raise argparse.ArgumentTypeError("must be 8000-192000 Hz")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="the orchestrator's YAML (its router section)")
    common.add_argument("--redis-url", help="registry Redis URL (default: the config's, REDIS_URL)")
    common.add_argument("--prefix", help="registry key prefix (default: the config's, voicefleet)")
    common.add_argument("--token", help=f"worker auth token (default: ${TOKEN_ENV}, the config's)")
    common.add_argument("-v", "--verbose", action="store_true", help="log what the client does")
    return common


def add_fleet_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `fleet` subcommand; `args.run(args)` returns its exit code."""
    fleet = commands.add_parser("fleet", help="operate the TTS worker fleet")
    actions = fleet.add_subparsers(dest="action", required=True)
    common = [_common()]

    status = actions.add_parser("status", parents=common, help="the workers, from the registry")
    status.add_argument(
        "--watch", nargs="?", const=2.0, type=_seconds, metavar="SECONDS", help="refresh (2 s)"
    )
    status.add_argument("--json", action="store_true", help="JSON for scripts")
    status.set_defaults(command_run=_status)

    drain = actions.add_parser("drain", parents=common, help="drain a worker, then it exits")
    drain.add_argument("name", help="the worker's registry name")
    drain.add_argument("--wait", type=_seconds, default=15.0, help="seconds to wait (15)")
    drain.add_argument("--no-wait", action="store_true", help="request the drain and return")
    drain.set_defaults(command_run=_drain)

    for verb in ("load", "unload"):
        models = actions.add_parser(verb, parents=common, help=f"{verb} a model on workers")
        models.add_argument("model", help="model id")
        where = models.add_mutually_exclusive_group(required=True)
        where.add_argument("--on", action="append", metavar="NAME", help="a worker (repeatable)")
        where.add_argument("--all", action="store_true", help="every worker offering the model")
        models.set_defaults(command_run=_models)

    speak = actions.add_parser("say", parents=common, help="speak a text into a WAV file")
    speak.add_argument("text")
    speak.add_argument("--voice", default="", help="public voice name (default: the router's)")
    speak.add_argument("--out", type=Path, required=True, help="WAV file to write")
    speak.add_argument("--rate", type=_rate, default=48_000, help="sample rate (48000)")
    speak.set_defaults(command_run=_say)
    fleet.set_defaults(run=_run)
