"""A container's voicefleet process reproduced on this machine, for the deployment tests
(docker-compose.yml in test_deploy.py, Kubernetes in test_k8s.py): the image's entrypoint runs
for real with a stand-in `voicefleet` that reports its argv and environment, then the real CLI
and config loader run with that environment and the server replaced by a recorder. No container
engine or cluster is needed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from voicefleet.cli import build_parser
from voicefleet.orchestrator.config import load_orchestrator_config
from voicefleet.tts.config import load_worker_config

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
LOADERS: dict[str, Callable[[Path], BaseModel]] = {
    "worker": load_worker_config,
    "orchestrator": load_orchestrator_config,
}
ENV_PREFIXES = {"worker": "VOICEFLEET_WORKER__", "orchestrator": "VOICEFLEET_ORCHESTRATOR__"}


def read_by_the_code(var: str) -> bool:
    """Whether a variable is one the voicefleet code (or LiveKit's SDK) reads, by its name."""
    return var == "REDIS_URL" or var.startswith(("VOICEFLEET_", "LIVEKIT_"))


def image_files() -> Iterator[tuple[str, Path]]:
    """(path in the image, path in the repository) for each COPY from the build context."""
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        *sources, dest = [word for word in words[1:] if not word.startswith("--")]
        for source in sources:
            target = dest + Path(source).name if dest.endswith("/") else dest
            yield target.rstrip("/"), REPO / source


def repo_path(image_path: str) -> Path:
    """The repository file the image holds at image_path."""
    for target, source in image_files():
        if image_path == target or image_path.startswith(target + "/"):
            return source / image_path[len(target) :].lstrip("/")
    pytest.fail(f"{image_path} is not copied into the image by docker/Dockerfile")


def in_repo(argv: list[str]) -> list[str]:
    """argv with the image's /app/... paths replaced by the repository files they come from."""
    return [re.sub(r"/app/\S+", lambda m: str(repo_path(m[0])), word) for word in argv]


def entrypoint(tmp: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run docker/entrypoint.sh with a stand-in `voicefleet` that prints its argv and env."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "voicefleet"
    report = "import json, os, sys; json.dump([sys.argv[1:], dict(os.environ)], sys.stdout)"
    stand_in.write_text(f"#!/bin/sh\nexec python -c '{report}' \"$@\"\n")
    stand_in.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *argv],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@dataclass
class Launched:
    """What one container's process runs with."""

    argv: list[str]
    env: dict[str, str]
    config: Any

    @property
    def kind(self) -> str:
        """worker or orchestrator."""
        return self.argv[1]


def launch(
    tmp: Path,
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    paths: Callable[[list[str]], list[str]] = in_repo,
) -> Launched:
    """The entrypoint, then the real CLI and config loader; serve() only records the config.
    `paths` maps the container's file paths in argv to files on this machine."""
    ran = entrypoint(tmp, argv, env)
    assert ran.returncode == 0, ran.stderr
    args_after, final_env = json.loads(ran.stdout)
    for var, value in final_env.items():
        if read_by_the_code(var):
            monkeypatch.setenv(var, value)
    configs: list[Any] = []

    async def serve(config: Any, *_: Any) -> None:
        configs.append(config)

    monkeypatch.setattr("voicefleet.tts.worker.serve", serve)
    monkeypatch.setattr("voicefleet.orchestrator.app.serve", serve)
    args = build_parser().parse_args(paths(args_after))
    assert args.run(args) == 0
    return Launched(["voicefleet", *args_after], final_env, configs[0])


def as_configured(kind: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The config file alone, without the service's environment overrides."""
    with monkeypatch.context() as scoped:
        for var in list(os.environ):
            if read_by_the_code(var):
                scoped.delenv(var)
        return LOADERS[kind](path)


def field(config: BaseModel, path: list[str]) -> Any:
    """The value at a dotted config path (as env overrides spell it)."""
    value: Any = config
    for key in path:
        assert key in type(value).model_fields, f"{type(value).__name__} has no field {key!r}"
        value = getattr(value, key)
    return value


def check_overrides(where: str, launched: Launched) -> None:
    """Every VOICEFLEET_ variable is read by the process's loader and lands, as given, on a real
    config field; REDIS_URL lands on the registry URL."""
    prefix = ENV_PREFIXES[launched.kind]
    overrides = {var: value for var, value in launched.env.items() if var.startswith(prefix)}
    strays = [v for v in launched.env if v.startswith("VOICEFLEET_") and v not in overrides]
    assert not strays, f"{where}: {strays} are read by no loader (prefix {prefix})"
    for var, raw in overrides.items():
        value = field(launched.config, var.removeprefix(prefix).lower().split("__"))
        if isinstance(value, SecretStr):  # tokens are read verbatim, not as YAML
            assert value.get_secret_value() == raw, f"{where}: {var} does not land verbatim"
        else:
            assert value == yaml.safe_load(raw), f"{where}: {var}={raw}"
    if "REDIS_URL" in launched.env:
        registry = "registry" if launched.kind == "worker" else "router"
        assert field(launched.config, [registry, "redis_url"]) == launched.env["REDIS_URL"]


def unread(env: Mapping[str, str], also_read: set[str]) -> list[str]:
    """Variables no code reads: neither voicefleet's nor the entrypoint's (`also_read`)."""
    return sorted(var for var in env if not read_by_the_code(var) and var not in also_read)
