"""The WebSocket decoder: every malformed text frame is a ProtocolError with a stable code.

The cases below were found by tests/fuzz (bench/fuzz.py): before, each raised something other
than ProtocolError, which the transport does not catch, so the connection died with a traceback
in the log instead of getting its error event."""

from __future__ import annotations

import json

import pytest

from voicefleet.orchestrator.protocol import (
    Hello,
    ProtocolError,
    SpeakText,
    client_message_from_json,
)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[" * 100_000 + "]" * 100_000, "bad_message"),  # RecursionError
        ('{"a":' * 50_000 + "1" + "}" * 50_000, "bad_message"),  # RecursionError
        ('{"type":"hello","sample_rate":' + "1" * 5000 + "}", "bad_message"),  # ValueError
        ('{"type":"text","text":"hi \\ud800"}', "bad_message"),  # a lone surrogate
        ('{"type":"hello","sample_rate":16000,"token":"\\udfff"}', "bad_message"),
        ('{"type":"hello","sample_rate":16000,"voice":"a\\udc00b"}', "bad_message"),
        ("{", "bad_json"),
        ("[]", "bad_message"),
    ],
)
def test_malformed_frames_are_protocol_errors(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        client_message_from_json(text)
    assert caught.value.code == code
    assert "\ud800" not in caught.value.message


def test_escaped_unicode_that_is_valid_is_accepted() -> None:
    assert client_message_from_json('{"type":"text","text":"\\ud83d\\udc4b"}') == SpeakText("👋")
    hello = client_message_from_json('{"type":"hello","sample_rate":16000,"voice":"\\u00e9"}')
    assert hello == Hello(sample_rate=16000, voice="é")


@pytest.mark.parametrize("mode", ["auto", "on", "off", "client"])
def test_hello_names_who_cancels_echo(mode: str) -> None:
    message = client_message_from_json(
        json.dumps({"type": "hello", "sample_rate": 16000, "echo_cancellation": mode})
    )
    assert isinstance(message, Hello) and message.echo_cancellation == mode


@pytest.mark.parametrize("mode", ["yes", "", 1, True])
def test_a_bad_echo_cancellation_is_a_bad_message(mode: object) -> None:
    text = json.dumps({"type": "hello", "sample_rate": 16000, "echo_cancellation": mode})
    with pytest.raises(ProtocolError) as caught:
        client_message_from_json(text)
    assert caught.value.code == "bad_message"
    assert "echo_cancellation" in caught.value.message
