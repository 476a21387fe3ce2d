import time

import pytest

from voicefleet.fleet import FleetView, NoWorkerAvailable, Router, RouterConfig, UnknownVoice
from voicefleet.rpc.registry import WorkerCapabilities, WorkerLoad, WorkerRecord


def record(name: str, **kw: object) -> WorkerRecord:
    load = WorkerLoad(
        active_sessions=int(kw.get("sessions", 0)),  # type: ignore[call-overload]
        max_sessions=10,
        first_audio_ms_p50=kw.get("p50"),  # type: ignore[arg-type]
    )
    return WorkerRecord(
        name=name,
        address=f"127.0.0.1:{abs(hash(name)) % 1000 + 1000}",
        capabilities=WorkerCapabilities(
            languages=list(kw.get("languages", ["en-US"])),  # type: ignore[call-overload]
            streaming=bool(kw.get("streaming", True)),
        ),
        default_model="joe",
        resident_models=list(kw.get("resident", ["joe"])),  # type: ignore[call-overload]
        available_models=list(kw.get("available", ["joe", "amy"])),  # type: ignore[call-overload]
        voices=dict(kw.get("voices", {})),  # type: ignore[call-overload]
        load=load,
        started_at=0,
        updated_at=time.time() - 5,
    )


def router_with(*records: WorkerRecord) -> Router:
    fleet = FleetView(RouterConfig(redis_url="redis://127.0.0.1:1/0"))
    fleet.workers = {r.name: r for r in records}
    return Router(fleet)


def names(workers: list[WorkerRecord]) -> list[str]:
    return [w.name for w in workers]


def test_prefers_resident_model_then_least_loaded_then_fastest() -> None:
    router = router_with(
        record("busy", sessions=5),
        record("idle-slow", sessions=1, p50=200.0),
        record("idle-fast", sessions=1, p50=80.0),
        record("cold", sessions=0, resident=[]),
    )
    assert names(router.candidates("en", "joe")) == ["idle-fast", "idle-slow", "busy", "cold"]


def test_filters_language_capability_and_model() -> None:
    router = router_with(
        record("de", languages=["de-DE"]),
        record("batch", streaming=False),
        record("en"),
        record("no-amy", available=["joe"]),
    )
    assert names(router.candidates("en-GB", "amy")) == ["en"]
    with pytest.raises(NoWorkerAvailable, match="speaks fr"):
        router.candidates("fr")
    with pytest.raises(NoWorkerAvailable, match="model zzz"):
        router.candidates("en", "zzz")


def test_placements_spread_sessions_before_the_next_heartbeat() -> None:
    router = router_with(record("a"), record("b"))
    first = router.candidates()[0].name
    router.placed(first)
    assert router.candidates()[0].name != first


def test_failed_workers_are_skipped_for_the_cooldown() -> None:
    router = router_with(record("a"), record("b"))
    router.mark_failed("a")
    assert names(router.candidates()) == ["b"]
    with pytest.raises(NoWorkerAvailable, match="no TTS worker is registered"):
        router_with().candidates()


def test_a_cooldown_is_reported_as_one_not_as_a_language_problem() -> None:
    router = router_with(record("a"), record("b"))
    router.mark_failed("a")
    router.mark_failed("b")
    with pytest.raises(NoWorkerAvailable, match=r"failed just now \(2 registered; the first"):
        router.candidates("en")
    with pytest.raises(NoWorkerAvailable, match="no registered TTS worker speaks fr"):
        router.candidates("fr")


def test_latency_seen_by_this_client_outranks_the_workers_own_median() -> None:
    # The record's p50 is measured inside the worker: it cannot see a slow link.
    router = router_with(record("far", p50=60.0), record("near", p50=90.0))
    assert names(router.candidates()) == ["far", "near"]
    for _ in range(3):
        router.observe("far", 420.0)
        router.observe("near", 110.0)
    assert names(router.candidates()) == ["near", "far"]
    assert router.first_audio_ms(router.fleet.workers["far"]) == 420.0


def test_a_public_voice_keeps_the_workers_that_offer_it_preferring_it_resident() -> None:
    piper = record("piper", voices={"joe": "joe"}, available=["joe"])
    cold = record(
        "cold", voices={"joe": "joe", "heart": "hibari"}, available=["joe", "hibari"], sessions=1
    )
    warm = record(
        "warm", voices={"heart": "hibari"}, available=["hibari"], resident=["hibari"], sessions=3
    )
    router = router_with(piper, cold, warm)
    assert names(router.candidates(voice="heart")) == ["warm", "cold"]  # resident outranks load
    assert names(router.candidates(voice="joe")) == ["piper", "cold"]
    assert Router.model_for(cold, "", "heart") == "hibari"
    assert Router.model_for(cold, "", "") == "joe"


def test_a_voice_no_worker_offers_is_unknown_and_names_the_fleets_voices() -> None:
    router = router_with(record("a", voices={"joe": "joe"}), record("b", voices={"heart": "h"}))
    with pytest.raises(UnknownVoice, match=r"'emma'.*heart, joe"):
        router.candidates(voice="emma")


def test_in_a_fleet_without_public_names_the_voice_is_the_workers_to_judge() -> None:
    router = router_with(record("a"), record("b", sessions=2))
    assert names(router.candidates(voice="amy")) == ["a", "b"]


def test_without_load_on_demand_only_workers_holding_the_model_are_candidates() -> None:
    cold = record("cold", voices={"heart": "hibari"}, available=["joe", "hibari"])
    warm = record("warm", voices={"heart": "hibari"}, available=["hibari"], resident=["hibari"])
    router = router_with(cold, warm)
    router.fleet.config = router.fleet.config.model_copy(update={"load_on_demand": False})
    assert names(router.candidates(voice="heart")) == ["warm"]
    router = router_with(cold)
    router.fleet.config = router.fleet.config.model_copy(update={"load_on_demand": False})
    with pytest.raises(NoWorkerAvailable, match="load_on_demand is off"):
        router.candidates(voice="heart")
