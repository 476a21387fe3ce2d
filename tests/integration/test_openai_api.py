"""The OpenAI-compatible API with the official `openai` client (sync and async) against a real
orchestrator, a real Piper worker and tiny.en: speech in every format, streamed; transcription
in every response format, streamed; the model list; every refusal as the right exception."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import openai
import pytest
import soxr

from tests.integration.conftest import PIPER, Stack
from tests.speech import piper_speech, write_wav
from voicefleet.asr.faster_whisper import FasterWhisperRecognizer
from voicefleet.asr.wer import word_error_rate
from voicefleet.audio.encoding import encoder_for

TOKEN = "openai-test-token"
SENTENCE = "The museum opens early in the morning and closes late on weekdays."
PARAGRAPH = (
    "The harbour was quiet in the early morning. Fishing boats rocked gently at their moorings "
    "while gulls circled overhead. An old man mended his nets on the pier, humming a tune "
    "nobody else remembered. By noon the market would be loud and crowded again."
)


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    built = Stack(tmp_path_factory.mktemp("openai"), redis_url)
    try:
        built.worker(models=[{**PIPER, "voices": {"joe": ""}}])
        built.orchestrator(
            http={"auth_token": TOKEN},
            openai_api={
                "max_input_chars": 2000,
                "max_upload_bytes": 1_000_000,
                "max_concurrent_speech": 1,
            },
        )
        yield built
    finally:
        built.stop()


def client(stack: Stack, key: str = TOKEN) -> openai.OpenAI:
    url = f"{stack.orchestrators[0].url}/v1"
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def async_client(stack: Stack) -> openai.AsyncOpenAI:
    url = f"{stack.orchestrators[0].url}/v1"
    return openai.AsyncOpenAI(base_url=url, api_key=TOKEN, max_retries=0, timeout=60)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Any container PyAV reads -> float32 mono samples and their rate."""
    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        parts = [f.to_ndarray().astype(np.float32).reshape(-1) for f in container.decode(audio=0)]
    samples = np.concatenate(parts)
    if np.abs(samples).max() > 1.5:  # integer samples
        samples = samples / 32768.0
    return samples.astype(np.float32), int(rate)


def heard(recognizer: FasterWhisperRecognizer, samples: np.ndarray, rate: int) -> str:
    return recognizer.transcribe(soxr.resample(samples, rate, 16_000).astype(np.float32)).text


def spoken_wav(tmp: Path, text: str) -> bytes:
    path = tmp / "spoken.wav"
    write_wav(path, piper_speech(text), 16_000)
    return path.read_bytes()


def test_speech_wav_is_heard_as_its_text(
    api_stack: Stack, recognizer: FasterWhisperRecognizer
) -> None:
    audio = client(api_stack).audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="wav"
    )
    samples, rate = decode(audio.content)
    assert rate == 24_000
    assert word_error_rate(SENTENCE, heard(recognizer, samples, rate)) <= 0.25


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_speech_in_each_encoded_format_lasts_as_long_as_pcm(api_stack: Stack, fmt: str) -> None:
    speech = client(api_stack).audio.speech
    text = "Yes, of course."
    pcm = speech.create(model="tts-1", voice="joe", input=text, response_format="pcm")
    pcm_s = len(pcm.content) / 2 / 24_000
    encoded = speech.create(model="tts-1", voice="joe", input=text, response_format=fmt)
    samples, rate = decode(encoded.content)
    # Encoders pad a little (priming, frames); the speech itself is the same length.
    assert abs(samples.size / rate - pcm_s) < 0.15 * pcm_s + 0.1, (samples.size / rate, pcm_s)
    assert np.sqrt(np.mean(samples**2)) > 0.01  # not silence


async def test_streamed_speech_arrives_before_it_is_all_synthesized(api_stack: Stack) -> None:
    """The first bytes come while the rest is still being made: a small first chunk, and many
    chunks after it."""
    began = time.perf_counter()
    chunks: list[tuple[float, int]] = []
    async with async_client(api_stack).audio.speech.with_streaming_response.create(
        model="tts-1", voice="joe", input=PARAGRAPH, response_format="pcm"
    ) as response:
        async for chunk in response.iter_bytes():
            chunks.append((time.perf_counter() - began, len(chunk)))
    total = sum(size for _, size in chunks)
    assert total / 2 / 24_000 > 8.0  # the paragraph is long speech
    first_at, _ = chunks[0]
    received_by_first = sum(size for at, size in chunks if at <= first_at)
    assert received_by_first < 0.25 * total, (received_by_first, total)
    assert chunks[-1][0] > first_at


def test_speech_as_server_sent_events(api_stack: Stack) -> None:
    raw = client(api_stack).audio.speech.create(
        model="tts-1", voice="joe", input=SENTENCE, response_format="pcm", stream_format="sse"
    )
    events = [json.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 1 and len(deltas) == len(events) - 1
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(audio) / 2 / 24_000 > 1.5


def test_speed_shortens_the_speech(api_stack: Stack) -> None:
    speech = client(api_stack).audio.speech
    normal = speech.create(model="tts-1", voice="joe", input=SENTENCE, response_format="pcm")
    fast = speech.create(
        model="tts-1", voice="joe", input=SENTENCE, response_format="pcm", speed=2.0
    )
    assert len(fast.content) < 0.7 * len(normal.content)


def test_transcription_of_a_spoken_wav(
    api_stack: Stack, tmp_path: Path, recognizer: FasterWhisperRecognizer
) -> None:
    wav = spoken_wav(tmp_path, SENTENCE)
    transcriptions = client(api_stack).audio.transcriptions
    result = transcriptions.create(model="whisper-1", file=("speech.wav", wav, "audio/wav"))
    assert word_error_rate(SENTENCE, result.text) <= 0.2, result.text
    text = transcriptions.create(
        model="tiny.en", file=("speech.wav", wav), response_format="text", prompt="Museum hours."
    )
    assert isinstance(text, str) and word_error_rate(SENTENCE, text) <= 0.2, text


def test_verbose_transcription_has_segments_and_timed_words(
    api_stack: Stack, tmp_path: Path
) -> None:
    wav = spoken_wav(tmp_path, SENTENCE)
    result = client(api_stack).audio.transcriptions.create(
        model="whisper-1",
        file=("speech.wav", wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.segments and result.words
    assert result.duration == pytest.approx(len(wav[44:]) / 2 / 16_000, abs=0.01)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in result.words)
    assert result.words[-1].end <= result.duration + 0.05
    assert word_error_rate(SENTENCE, " ".join(w.word for w in result.words)) <= 0.2


def test_transcription_of_an_mp3_and_as_subtitles(api_stack: Stack) -> None:
    encoder = encoder_for("mp3", 16_000)
    mp3 = encoder.encode(piper_speech(SENTENCE).tobytes()) + encoder.finish()
    srt = client(api_stack).audio.transcriptions.create(
        model="whisper-1", file=("speech.mp3", mp3, "audio/mpeg"), response_format="srt"
    )
    lines = str(srt).splitlines()
    assert lines[0] == "1" and " --> " in lines[1] and lines[1].startswith("00:00:00,")
    assert word_error_rate(SENTENCE, " ".join(lines[2:])) <= 0.2, srt


async def test_streamed_transcription_sends_deltas_then_the_text(
    api_stack: Stack, tmp_path: Path
) -> None:
    wav = spoken_wav(tmp_path, SENTENCE)
    stream = await async_client(api_stack).audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", wav), stream=True
    )
    events = [event async for event in stream]
    assert events[-1].type == "transcript.text.done"
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert deltas and "".join(deltas) == events[-1].text
    assert word_error_rate(SENTENCE, events[-1].text) <= 0.2


def test_models_list_the_fleet_and_the_recognizer(api_stack: Stack) -> None:
    models = client(api_stack).models
    ids = {model.id for model in models.list()}
    assert {"tts-1", "en_US-joe-medium", "whisper-1", "tiny.en"} <= ids
    joe = models.retrieve("en_US-joe-medium")
    assert joe.model_extra is not None and joe.model_extra["voicefleet"]["voices"] == ["joe"]
    with pytest.raises(openai.NotFoundError):
        models.retrieve("no-such-model")


def test_refusals_are_openai_errors(api_stack: Stack) -> None:
    api = client(api_stack)
    speech = api.audio.speech
    with pytest.raises(openai.AuthenticationError):
        client(api_stack, key="wrong").audio.speech.create(model="tts-1", voice="joe", input="Hi")
    with pytest.raises(openai.BadRequestError) as unknown_voice:
        speech.create(model="tts-1", voice="nobody", input="Hello.")
    assert unknown_voice.value.code == "unknown_voice" and "joe" in unknown_voice.value.message
    with pytest.raises(openai.NotFoundError):
        speech.create(model="tts-9", voice="joe", input="Hello.")
    with pytest.raises(openai.BadRequestError) as too_long:
        speech.create(model="tts-1", voice="joe", input="word " * 500)
    assert too_long.value.param == "input"
    with pytest.raises(openai.BadRequestError):
        speech.create(model="tts-1", voice="joe", input="Hello.", response_format="ogg")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        speech.create(model="tts-1", voice="joe", input="Hello.", speed=9)
    transcriptions = api.audio.transcriptions
    with pytest.raises(openai.BadRequestError) as not_audio:
        transcriptions.create(model="whisper-1", file=("x.wav", b"this is not audio at all"))
    assert not_audio.value.code == "invalid_audio"
    with pytest.raises(openai.APIStatusError) as too_big:
        transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * 1_200_000))
    assert too_big.value.status_code == 413
    with pytest.raises(openai.NotFoundError):
        transcriptions.create(model="whisper-9", file=("x.wav", b"RIFF"))
    # After all of that, the API still serves.
    assert speech.create(model="tts-1", voice="joe", input="Still here.").content


async def test_a_second_speech_beyond_the_limit_is_told_to_retry(api_stack: Stack) -> None:
    """max_concurrent_speech is 1: while a long reply streams, another request gets 429."""
    api = async_client(api_stack)
    async with api.audio.speech.with_streaming_response.create(
        model="tts-1", voice="joe", input=PARAGRAPH * 3, response_format="pcm"
    ) as first:
        chunks = first.iter_bytes()
        assert await anext(chunks)
        with pytest.raises(openai.RateLimitError):
            await api.audio.speech.create(model="tts-1", voice="joe", input="Me too.")
    await asyncio.sleep(0.5)  # the first request's slot is given back once it ends
    assert (await api.audio.speech.create(model="tts-1", voice="joe", input="Now me.")).content
