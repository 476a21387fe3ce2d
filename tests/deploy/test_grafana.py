"""The Grafana dashboard queries only metrics the code exports, and the committed JSON is what
deploy/grafana/build.py writes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from voicefleet.orchestrator.metrics import OrchestratorMetrics
from voicefleet.tts.metrics import WorkerMetrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
_NAME = re.compile(r"\bvoicefleet_[a-z0-9_]+")


def exported_samples() -> set[str]:
    """Every sample name the two registries can expose (families plus their suffixes)."""
    names: set[str] = set()
    for registry in (OrchestratorMetrics().registry, WorkerMetrics().registry):
        for family in registry.collect():
            names.add(family.name)
            kind = family.type
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
            }.get(kind, ())
            names.update(family.name + suffix for suffix in suffixes)
    return names


def test_every_panel_queries_metrics_the_code_exports() -> None:
    dashboard = json.loads((GRAFANA / "voicefleet.json").read_text())
    exported = exported_samples()
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(_NAME.findall(target["expr"]))
            assert names, (panel["title"], target["expr"])
            queried |= names
    assert not queried - exported, f"not exported: {sorted(queried - exported)}"
    # Both tiers are on the dashboard.
    assert any(n.startswith("voicefleet_worker_") for n in queried)
    assert any(not n.startswith("voicefleet_worker_") for n in queried)


def test_the_committed_dashboard_is_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert (GRAFANA / "voicefleet.json").read_text() == build.render()
