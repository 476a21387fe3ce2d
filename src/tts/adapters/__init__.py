"""TTS adapters, discovered through the ``voicefleet.tts_adapters`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from voicefleet.tts.adapters.base import ModelSpec, TTSAdapter
from voicefleet.tts.errors import ModelNotFound

ENTRY_POINT_GROUP = "voicefleet.tts_adapters"


def _load(entry: EntryPoint) -> type[TTSAdapter]:
    cls = entry.load()
    if not (isinstance(cls, type) and issubclass(cls, TTSAdapter)):
        raise TypeError(f"entry point {entry.name!r} ({entry.value}) is not a TTSAdapter")
    return cls


def adapter_classes() -> dict[str, type[TTSAdapter]]:
    """Every installed adapter class by entry-point name."""
    return {entry.name: _load(entry) for entry in entry_points(group=ENTRY_POINT_GROUP)}


def adapter_class(name: str) -> type[TTSAdapter] | None:
    """The installed adapter class of one entry-point name (only that one is imported)."""
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return _load(entry)
    return None


def create_adapter(spec: ModelSpec) -> TTSAdapter:
    """Instantiate (not load) the adapter a model spec names (only its module is imported)."""
    cls = adapter_class(spec.adapter)
    if cls is None:
        known = ", ".join(sorted(adapter_classes())) or "none installed"
        raise ModelNotFound(f"model {spec.id!r}: unknown adapter {spec.adapter!r} (known: {known})")
    return cls(spec)


__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelSpec",
    "TTSAdapter",
    "adapter_class",
    "adapter_classes",
    "create_adapter",
]
