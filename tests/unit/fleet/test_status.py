"""`voicefleet fleet status` formatting, from plain records: the table, the skipped records
and the JSON."""

from __future__ import annotations

import json

from voicefleet.fleet.status import (
    HEADERS,
    FleetSnapshot,
    format_table,
    models_cell,
    render_status,
    status_json,
    worker_row,
)
from voicefleet.rpc.registry import (
    SkippedRecord,
    SkipReason,
    WorkerCapabilities,
    WorkerLoad,
    WorkerRecord,
)

NOW = 1_000.0


def record(name: str, **changes: object) -> WorkerRecord:
    fields: dict[str, object] = {
        "name": name,
        "address": f"10.0.0.{len(name)}:50051",
        "capabilities": WorkerCapabilities(languages=["en-US"]),
        "default_model": "joe-medium",
        "resident_models": ["joe-medium"],
        "available_models": ["joe-medium", "amy-low"],
        "voices": {"joe": "joe-medium", "amy": "amy-low"},
        "load": WorkerLoad(
            active_sessions=3,
            max_sessions=16,
            active_streams=2,
            queue_depth=4,
            rtf=0.0812,
            first_audio_ms_p50=153.6,
        ),
        "started_at": 900.0,
        "updated_at": NOW - 0.42,
    }
    return WorkerRecord.model_validate({**fields, **changes})


def test_a_row_shows_every_column_from_the_record() -> None:
    row = worker_row(record("piper-1"), NOW, drain_requested=True)

    assert dict(zip(HEADERS, row, strict=True)) == {
        "WORKER": "piper-1",
        "ADDRESS": "10.0.0.7:50051",
        "MODELS (* resident)": "amy-low, joe-medium*",
        "VOICES": "amy, joe",
        "SESSIONS": "3/16",
        "STREAMS": "2",
        "QUEUE": "4",
        "RTF": "0.08",
        "P50 FIRST AUDIO": "154 ms",
        "HEARTBEAT": "0.4 s ago",
        "DRAIN": "requested",
    }


def test_a_fresh_worker_shows_dashes_for_what_it_has_not_measured() -> None:
    fresh = record("w", load=WorkerLoad(max_sessions=4), voices={}, updated_at=NOW + 2)

    row = dict(zip(HEADERS, worker_row(fresh, NOW), strict=True))

    assert (row["RTF"], row["P50 FIRST AUDIO"], row["VOICES"], row["DRAIN"]) == ("-",) * 4
    assert row["SESSIONS"] == "0/4"
    assert row["HEARTBEAT"] == "0.0 s ago"  # a worker clock ahead of ours is not negative


def test_models_cell_marks_resident_models_and_never_hides_one() -> None:
    odd = record("w", resident_models=["extra", "joe-medium"], available_models=["joe-medium"])

    assert models_cell(odd) == "extra*, joe-medium*"
    assert models_cell(record("w", resident_models=[], available_models=[])) == "-"


def test_format_table_aligns_columns_without_trailing_spaces() -> None:
    text = format_table(("A", "LONG HEADER"), [["wide cell", "x"], ["y", ""]])

    assert text.splitlines() == ["A          LONG HEADER", "wide cell  x", "y"]


def test_render_status_lists_workers_sorted_then_skipped_records_with_reasons() -> None:
    snapshot = FleetSnapshot(
        "redis://r:6379/0",
        "vf",
        [record("zeta"), record("alpha")],
        [SkippedRecord("broken", SkipReason.NOT_JSON, "not JSON: Expecting value")],
        frozenset({"zeta"}),
    )

    lines = render_status(snapshot, NOW).splitlines()

    assert lines[0].split()[0] == "WORKER"
    assert lines[1].startswith("alpha ") and lines[2].startswith("zeta ")
    assert lines[2].rstrip().endswith("requested") and lines[1].rstrip().endswith("-")
    assert lines[3] == "2 worker(s) in registry redis://r:6379/0 (prefix vf)"
    assert lines[4] == "1 record(s) skipped (not usable by the router):"
    assert lines[5] == "  broken: not_json: not JSON: Expecting value"


def test_render_status_says_when_no_worker_is_registered() -> None:
    text = render_status(FleetSnapshot("redis://r:6379/0", "vf"), NOW)

    assert text == "no workers registered in registry redis://r:6379/0 (prefix vf)"


def test_status_json_is_the_record_plus_heartbeat_age_and_drain() -> None:
    snapshot = FleetSnapshot(
        "redis://r/0",
        "vf",
        [record("b"), record("a")],
        [SkippedRecord("c", SkipReason.SCHEMA_NEWER, "schema_version 9")],
        frozenset({"b"}),
    )

    data = json.loads(json.dumps(status_json(snapshot, NOW)))

    assert [w["name"] for w in data["workers"]] == ["a", "b"]
    first = data["workers"][0]
    assert WorkerRecord.model_validate(
        {k: v for k, v in first.items() if k not in ("heartbeat_age_s", "drain_requested")}
    ) == record("a")
    assert first["heartbeat_age_s"] == 0.42
    assert [w["drain_requested"] for w in data["workers"]] == [False, True]
    assert data["skipped"] == [
        {"name": "c", "reason": "schema_newer", "detail": "schema_version 9"}
    ]
    assert (data["registry"], data["prefix"], data["at"]) == ("redis://r/0", "vf", NOW)
