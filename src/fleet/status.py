"""What `voicefleet fleet status` shows, computed from registry records with no I/O: the table
an operator reads and the JSON a script reads.

A record's heartbeat age is this machine's clock minus the worker's `updated_at`: a worker whose
clock runs ahead or behind shows the difference too (a negative age is shown as 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voicefleet.rpc.registry import SkippedRecord, WorkerRecord

HEADERS = (
    "WORKER",
    "ADDRESS",
    "MODELS (* resident)",
    "VOICES",
    "SESSIONS",
    "STREAMS",
    "QUEUE",
    "RTF",
    "P50 FIRST AUDIO",
    "HEARTBEAT",
    "DRAIN",
)


@dataclass(frozen=True)
class FleetSnapshot:
    """One read of the registry: where from, the workers, the skipped records and the workers
    with a drain request not taken yet."""

    registry: str  # the Redis URL, without its password
    prefix: str
    records: Sequence[WorkerRecord] = ()
    skipped: Sequence[SkippedRecord] = ()
    drains: frozenset[str] = field(default_factory=frozenset)


def models_cell(record: WorkerRecord) -> str:
    """Every available model, the resident ones marked `*` (resident ones the catalog does not
    list, which a worker never writes, are shown too rather than hidden)."""
    names = sorted(set(record.available_models) | set(record.resident_models))
    resident = set(record.resident_models)
    return ", ".join(f"{name}*" if name in resident else name for name in names) or "-"


def heartbeat_age_s(record: WorkerRecord, now: float) -> float:
    """Seconds since the worker last wrote its record (never negative)."""
    return max(0.0, now - record.updated_at)


def _optional(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def worker_row(record: WorkerRecord, now: float, drain_requested: bool = False) -> list[str]:
    """One table row for one record."""
    load = record.load
    return [
        record.name,
        record.address,
        models_cell(record),
        ", ".join(sorted(record.voices)) or "-",
        f"{load.active_sessions}/{load.max_sessions}",
        str(load.active_streams),
        str(load.queue_depth),
        _optional(load.rtf, "{:.2f}"),
        _optional(load.first_audio_ms_p50, "{:.0f} ms"),
        f"{heartbeat_age_s(record, now):.1f} s ago",
        "requested" if drain_requested else "-",
    ]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, no trailing spaces."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def render_status(snapshot: FleetSnapshot, now: float) -> str:
    """The operator's view: the table of workers, then any skipped record with its reason."""
    source = f"registry {snapshot.registry} (prefix {snapshot.prefix})"
    if snapshot.records:
        rows = [
            worker_row(record, now, record.name in snapshot.drains)
            for record in sorted(snapshot.records, key=lambda r: r.name)
        ]
        lines = [format_table(HEADERS, rows)]
        lines.append(f"{len(rows)} worker(s) in {source}")
    else:
        lines = [f"no workers registered in {source}"]
    if snapshot.skipped:
        lines.append(f"{len(snapshot.skipped)} record(s) skipped (not usable by the router):")
        lines += [
            f"  {entry.name}: {entry.reason.value}: {entry.detail}" for entry in snapshot.skipped
        ]
    return "\n".join(lines)


def status_json(snapshot: FleetSnapshot, now: float) -> dict[str, Any]:
    """The same as a JSON-ready dict: each record as stored, plus its heartbeat age and whether
    a drain request waits for it."""
    workers = [
        {
            **record.model_dump(mode="json"),
            "heartbeat_age_s": round(heartbeat_age_s(record, now), 3),
            "drain_requested": record.name in snapshot.drains,
        }
        for record in sorted(snapshot.records, key=lambda r: r.name)
    ]
    skipped = [
        {"name": entry.name, "reason": entry.reason.value, "detail": entry.detail}
        for entry in snapshot.skipped
    ]
    return {
        "registry": snapshot.registry,
        "prefix": snapshot.prefix,
        "at": now,
        "workers": workers,
        "skipped": skipped,
    }
