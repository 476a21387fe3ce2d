from prometheus_client import generate_latest

from voicefleet.orchestrator.metrics import OrchestratorMetrics


def test_the_skipped_records_counter_follows_the_fleet_views_counts() -> None:
    metrics = OrchestratorMetrics()
    metrics.sync_registry_skipped({"not_json": 2, "invalid": 0})
    metrics.sync_registry_skipped({"not_json": 2, "invalid": 0})  # a second scrape adds nothing
    metrics.sync_registry_skipped({"not_json": 3, "invalid": 1})
    text = generate_latest(metrics.registry).decode()
    assert 'voicefleet_registry_records_skipped_total{reason="not_json"} 3.0' in text
    assert 'voicefleet_registry_records_skipped_total{reason="invalid"} 1.0' in text
