"""The `voicefleet` command line: one entry point, a subcommand per process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicefleet.asr.base import ASRError
from voicefleet.asr.cli import add_asr_models_parser
from voicefleet.client.cli import add_client_parser
from voicefleet.fleet.cli import add_fleet_parser
from voicefleet.settings import ConfigError
from voicefleet.tts.errors import WorkerError

if TYPE_CHECKING:
    from voicefleet.orchestrator.config import LiveKitConfig


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _worker(args: argparse.Namespace) -> int:
    from voicefleet.tts.config import load_worker_config, model_overrides
    from voicefleet.tts.worker import serve

    overrides: dict[str, Any] = model_overrides(args.adapter, args.model)
    if args.port is not None:
        overrides["port"] = args.port
    if args.host is not None:
        overrides["host"] = args.host
    if args.name is not None:
        overrides["name"] = args.name
    if args.redis_url is not None:
        overrides["registry"] = {"redis_url": args.redis_url or None}
    config = load_worker_config(args.config, overrides)
    _configure_logging(config.log_level)
    asyncio.run(serve(config))
    return 0


def _orchestrator(args: argparse.Namespace) -> int:
    from voicefleet.orchestrator.app import serve
    from voicefleet.orchestrator.config import load_orchestrator_config

    overrides: dict[str, Any] = {}
    http = {
        key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None
    }
    if http:
        overrides["http"] = http
    if args.redis_url is not None:
        overrides["router"] = {"redis_url": args.redis_url}
    if args.livekit:
        overrides["transport"] = {"livekit": {"enabled": True}}
    config = load_orchestrator_config(args.config, overrides)
    if config.transport.livekit.enabled:
        _check_livekit(config.transport.livekit)
    _configure_logging(config.log_level)
    asyncio.run(serve(config))
    return 0


def _wyoming(args: argparse.Namespace) -> int:
    from voicefleet.orchestrator.app import serve_wyoming
    from voicefleet.orchestrator.config import load_orchestrator_config

    wyoming: dict[str, Any] = {"enabled": True}
    if args.uri is not None:
        wyoming["uri"] = args.uri
    if args.allow is not None:
        wyoming["allowed_addresses"] = args.allow
    overrides: dict[str, Any] = {"transport": {"wyoming": wyoming}}
    if args.redis_url is not None:
        overrides["router"] = {"redis_url": args.redis_url}
    config = load_orchestrator_config(args.config, overrides)
    _configure_logging(config.log_level)
    try:
        asyncio.run(serve_wyoming(config))
    except OSError as error:  # the address is taken or cannot be bound
        raise ConfigError(f"cannot listen on {config.transport.wyoming.uri}: {error}") from None
    return 0


def _check_livekit(livekit: LiveKitConfig) -> None:
    """Fail at start-up, not at the first room, when the LiveKit settings are incomplete."""
    missing = [] if livekit.credentials() else [livekit.api_key_env, livekit.api_secret_env]
    if not (livekit.url or os.environ.get("LIVEKIT_URL")):
        missing.append("LIVEKIT_URL (or transport.livekit.url)")
    if missing:
        raise ConfigError(f"--livekit needs {', '.join(missing)}")


def _up(args: argparse.Namespace) -> int:
    from voicefleet.up import default_worker_configs, run_up

    _configure_logging("INFO")
    return asyncio.run(
        run_up(
            args.worker_config or default_worker_configs(),
            _default_config(args.orchestrator_config, "orchestrator.yaml"),
            http_port=args.port,
            redis_port=args.redis_port,
            worker_port=args.worker_port,
            wyoming=not args.no_wyoming,
            wyoming_port=args.wyoming_port,
        )
    )


def _default_config(given: Path | None, name: str) -> Path | None:
    if given is not None:
        return given
    candidate = Path("configs") / name
    return candidate if candidate.is_file() else None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="voicefleet", description="Realtime full-duplex voice.")
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run a TTS worker (gRPC)")
    worker.add_argument("--config", type=Path, help="worker YAML (e.g. configs/worker.yaml)")
    worker.add_argument("--adapter", help="adapter for --model, or for a default model of its own")
    worker.add_argument("--model", help="model id from the config, or a path to a model file")
    worker.add_argument("--host", help="address to bind")
    worker.add_argument("--port", type=int, help="gRPC port (0: any free port)")
    worker.add_argument("--name", help="worker name in the registry")
    worker.add_argument("--redis-url", help="registry Redis URL ('' to not register)")
    worker.set_defaults(run=_worker)

    orchestrator = commands.add_parser("orchestrator", help="run the orchestrator (HTTP + /ws)")
    orchestrator.add_argument("--config", type=Path, help="orchestrator YAML")
    orchestrator.add_argument("--host", help="address to bind")
    orchestrator.add_argument("--port", type=int, help="HTTP port")
    orchestrator.add_argument("--redis-url", help="registry Redis URL")
    orchestrator.add_argument(
        "--livekit",
        action="store_true",
        help="also run the LiveKit agent worker (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)",
    )
    orchestrator.set_defaults(run=_orchestrator)

    up = commands.add_parser("up", help="everything: Redis-compatible server, worker, orchestrator")
    up.add_argument(
        "--worker-config",
        type=Path,
        action="append",
        help="a TTS worker's config; repeat for more workers (default: configs/worker.yaml, and "
        "configs/worker-hibari.yaml when the hibari plug-in is installed)",
    )
    up.add_argument("--orchestrator-config", type=Path, help="default: configs/orchestrator.yaml")
    up.add_argument("--port", type=int, help="HTTP port of the orchestrator (default 8080)")
    up.add_argument("--redis-port", type=int, default=6379, help="embedded server port")
    up.add_argument(
        "--worker-port", type=int, default=50051, help="the first TTS worker's gRPC port"
    )
    up.add_argument(
        "--wyoming-port",
        type=int,
        help="the Wyoming endpoint's port (default: transport.wyoming.uri's, 10200)",
    )
    up.add_argument("--no-wyoming", action="store_true", help="run no Wyoming endpoint")
    up.set_defaults(run=_up)

    wyoming = commands.add_parser(
        "wyoming", help="run only the Wyoming endpoint (Home Assistant): TTS via the fleet, ASR"
    )
    wyoming.add_argument("--config", type=Path, help="orchestrator YAML (transport.wyoming, asr)")
    wyoming.add_argument(
        "--uri", help="tcp://HOST:PORT or unix://PATH (default tcp://127.0.0.1:10200)"
    )
    wyoming.add_argument(
        "--allow",
        action="append",
        metavar="ADDRESS",
        help="a client IP or network let in (repeat; default: transport.wyoming.allowed_addresses)",
    )
    wyoming.add_argument("--redis-url", help="registry Redis URL")
    wyoming.set_defaults(run=_wyoming)

    add_client_parser(commands)
    add_asr_models_parser(commands)
    add_fleet_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voicefleet` script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (ConfigError, WorkerError, ASRError) as error:
        print(f"voicefleet {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
