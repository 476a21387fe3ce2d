"""Writes deploy/grafana/voicefleet.json, the Grafana dashboard over voicefleet's metrics.

    .venv/bin/python deploy/grafana/build.py

Panels are listed here, one line each, so the dashboard stays reviewable; the test
tests/deploy/test_grafana.py checks that every metric a panel queries exists in the code and
that the committed JSON is what this script writes.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("voicefleet.json")
P50 = "histogram_quantile(0.5, sum by (le) (rate({m}_bucket[5m])))"
P95 = "histogram_quantile(0.95, sum by (le) (rate({m}_bucket[5m])))"

# (title, unit, [(legend, PromQL)]), in rows of two
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Time to first audio (orchestrator)",
        "s",
        [
            ("p50", P50.format(m="voicefleet_time_to_first_audio_seconds")),
            ("p95", P95.format(m="voicefleet_time_to_first_audio_seconds")),
        ],
    ),
    ("Sessions", "short", [("open", "sum(voicefleet_sessions_active)")]),
    (
        "ASR latency and queueing",
        "s",
        [
            ("compute p50", P50.format(m="voicefleet_asr_seconds")),
            ("queue p95", P95.format(m="voicefleet_asr_queue_seconds")),
        ],
    ),
    (
        "Barge-in latency and event-loop lag",
        "s",
        [
            ("barge-in p50", P50.format(m="voicefleet_barge_in_seconds")),
            ("loop lag p95", P95.format(m="voicefleet_event_loop_lag_seconds")),
        ],
    ),
    (
        "Reply errors and failovers (per s)",
        "short",
        [
            ("errors {{kind}}", "sum by (kind) (rate(voicefleet_errors_total[5m]))"),
            ("failovers", "sum(rate(voicefleet_tts_failovers_total[5m]))"),
            ("underruns", "sum(rate(voicefleet_playback_underruns_total[5m]))"),
        ],
    ),
    (
        "Model placement (per s)",
        "short",
        [("{{model}}", "sum by (model) (rate(voicefleet_tts_placements_total[5m]))")],
    ),
    (
        "OpenAI-compatible API",
        "short",
        [
            (
                "{{api}} {{status}}",
                "sum by (api, status) (rate(voicefleet_api_requests_total[5m]))",
            ),
            ("speech first byte p50 (s)", P50.format(m="voicefleet_api_speech_first_byte_seconds")),
        ],
    ),
    (
        "Wyoming (per s)",
        "short",
        [
            (
                "{{request}}",
                "sum by (request) (rate(voicefleet_wyoming_requests_total[5m]))",
            ),
            ("error {{code}}", "sum by (code) (rate(voicefleet_wyoming_errors_total[5m]))"),
        ],
    ),
    (
        "Worker streams and sessions",
        "short",
        [
            ("streams {{instance}}", "sum by (instance) (voicefleet_worker_streams_active)"),
            ("sessions {{instance}}", "sum by (instance) (voicefleet_worker_sessions_active)"),
            ("queue {{instance}}", "sum by (instance) (voicefleet_worker_queue_depth)"),
        ],
    ),
    (
        "Worker first frame",
        "s",
        [
            ("p50", P50.format(m="voicefleet_worker_first_frame_seconds")),
            ("p95", P95.format(m="voicefleet_worker_first_frame_seconds")),
        ],
    ),
    (
        "Worker real-time factor",
        "short",
        [
            ("p50", P50.format(m="voicefleet_worker_rtf")),
            ("p95", P95.format(m="voicefleet_worker_rtf")),
        ],
    ),
    (
        "PAUSE / STOP obeyed",
        "s",
        [
            (
                "{{command}} p95",
                "histogram_quantile(0.95, sum by (le, command) "
                "(rate(voicefleet_worker_control_seconds_bucket[5m])))",
            )
        ],
    ),
    (
        "Worker errors (per s)",
        "short",
        [("{{rpc}} {{code}}", "sum by (rpc, code) (rate(voicefleet_worker_errors_total[5m]))")],
    ),
    (
        "Models: loads, evictions, resident",
        "short",
        [
            ("loads {{model}}", "sum by (model) (rate(voicefleet_worker_model_loads_total[5m]))"),
            (
                "evictions {{reason}}",
                "sum by (reason) (rate(voicefleet_worker_model_evictions_total[5m]))",
            ),
            ("resident {{instance}}", "sum by (instance) (voicefleet_worker_models_resident)"),
        ],
    ),
    (
        "Draining workers",
        "short",
        [("draining", "sum(voicefleet_worker_draining)")],
    ),
]


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict[str, object]:
    """One time-series panel, placed on a two-column grid."""
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
            for n, (legend, expr) in enumerate(queries)
        ],
    }


def dashboard() -> dict[str, object]:
    """The whole dashboard, with a Prometheus data source variable."""
    return {
        "title": "voicefleet",
        "uid": "voicefleet",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "tags": ["voicefleet"],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


def render() -> str:
    """The JSON text written to OUT."""
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
