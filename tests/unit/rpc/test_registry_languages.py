from voicefleet.rpc.registry import speaks


def test_the_base_language_decides_for_router_and_worker_alike() -> None:
    assert speaks(["en-US"], "en-GB") and speaks(["en-US"], "en") and speaks(["EN-us"], "en-US")
    assert speaks(["en-US"], "")
    assert not speaks(["en-US", "de-DE"], "fr-FR")
    assert not speaks([], "en")
